//! `certificate`: a private CA and a server certificate it signed, written into the run, for TLS in local runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::{StageCx, StageResult};
use crate::config::{CertificateStage, Stage};
use crate::gates::GateCx;
use crate::run::record::GateRecord;

const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

pub async fn run(stage: &Stage, spec: &CertificateStage, cx: &StageCx<'_>) -> StageResult {
    let dir = match spec.dir.as_deref() {
        Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => cx.run_dir.join(dir),
        None => cx.run_dir.join("tls"),
    };
    let validity = spec.valid_for.map_or(DEFAULT_VALIDITY, |d| d.0);
    let expected = format!("a CA and a certificate for {} in {}", spec.hosts.join(", "), dir.display());
    let (gate, outputs) = match issue(&spec.hosts, validity, &dir) {
        Ok(()) => {
            let actual = format!("valid for {}: ca.pem, cert.pem, key.pem", humantime::format_duration(validity));
            let outputs =
                serde_json::json!({ "dir": dir, "hosts": spec.hosts, "valid_days": validity.as_secs() / 86400 });
            (GateRecord::judged("certificate issued", "certificate", true, expected, actual), outputs)
        }
        Err(e) => {
            let gate = GateRecord::judged("certificate issued", "certificate", false, expected, e);
            return StageResult { gates: vec![gate], ..Default::default() };
        }
    };
    let gate_cx = GateCx { command: None, cancel: &cx.cancel, base_dir: cx.base_dir };
    let mut gates = vec![gate];
    gates.extend(super::verify::run_gates(stage, &gate_cx).await);
    StageResult { gates, outputs, ..Default::default() }
}

/// Writes `ca.pem` (the trust anchor for clients), `cert.pem` (the server certificate followed by the CA, the
/// chain a server presents) and `key.pem` (the server's key).
fn issue(hosts: &[String], validity: Duration, dir: &Path) -> Result<(), String> {
    if hosts.is_empty() {
        return Err("`hosts` is empty: name the DNS names and addresses clients connect to".into());
    }
    if let Some(bad) = hosts.iter().find(|h| rustls::pki_types::ServerName::try_from(h.as_str()).is_err()) {
        return Err(format!("`{bad}` is neither a DNS name nor an IP address"));
    }
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + validity;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca_params.distinguished_name.push(DnType::CommonName, "xtask rehearsal CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca_params.not_before, ca_params.not_after) = (now - Duration::from_secs(3600), not_after);
    let ca_key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| format!("signing the CA: {e}"))?;

    let mut params =
        CertificateParams::new(hosts.to_vec()).map_err(|e| format!("the hosts are not valid names: {e}"))?;
    params.distinguished_name.push(DnType::CommonName, hosts.first().map_or("localhost", String::as_str));
    (params.not_before, params.not_after) = (now - Duration::from_secs(3600), not_after);
    let key = KeyPair::generate().map_err(|e| format!("generating the server key: {e}"))?;
    let cert = params.signed_by(&key, &ca).map_err(|e| format!("signing the certificate: {e}"))?;

    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(&dir.join("ca.pem"), &ca.pem())?;
    write(&dir.join("cert.pem"), &format!("{}{}", cert.pem(), ca.pem()))?;
    // The service reads the key through a bind mount as its own unprivileged user, so the file cannot be 0600
    // to the host user; it is a throwaway key for a local run, kept inside the run's directory.
    write(&dir.join("key.pem"), &key.serialize_pem())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_chain_the_ca_verifies() {
        let dir = tempfile::tempdir().unwrap();
        issue(&["localhost".into(), "127.0.0.1".into()], Duration::from_secs(86400), dir.path()).unwrap();
        let chain = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(std::fs::read_to_string(dir.path().join("key.pem")).unwrap().contains("PRIVATE KEY"));
        assert!(issue(&["not a name!".into()], Duration::from_secs(60), dir.path()).is_err());
        assert!(issue(&[], Duration::from_secs(60), dir.path()).is_err());
    }
}
