//! Runs `helm lint --strict` and `helm template` for a chart through xshell and collects their output.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use xshell::{Shell, cmd};

/// One chart with the values of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartArgs {
    pub release: String,
    pub chart: PathBuf,
    /// `-f` files, later ones win.
    pub values_files: Vec<PathBuf>,
    /// `--set` expressions (`key=value`), applied after the files.
    pub set: Vec<String>,
    pub namespace: Option<String>,
}

impl ChartArgs {
    fn values_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for file in &self.values_files {
            flags.push("-f".to_string());
            flags.push(file.display().to_string());
        }
        for expr in &self.set {
            flags.push("--set".to_string());
            flags.push(expr.clone());
        }
        if let Some(namespace) = &self.namespace {
            flags.push("--namespace".to_string());
            flags.push(namespace.clone());
        }
        flags
    }
}

/// What a helm command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmOutput {
    pub command: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl HelmOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The lines that say why it failed: helm's `[ERROR]`/`Error:` lines, else all of stderr.
    pub fn error_summary(&self) -> String {
        let flagged: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| l.starts_with("[ERROR]") || l.starts_with("Error"))
            .collect();
        if flagged.is_empty() { self.stderr.trim().to_string() } else { flagged.join("\n") }
    }
}

/// `helm lint --strict CHART …`: warnings fail too, so a chart that lints is clean.
pub fn lint(sh: &Shell, helm: &Path, args: &ChartArgs, cancel: &CancellationToken) -> anyhow::Result<HelmOutput> {
    let chart = &args.chart;
    let flags = args.values_flags();
    run(cmd!(sh, "{helm} lint --strict {chart} {flags...}"), cancel)
}

/// `helm template RELEASE CHART …`: the manifests an install would send.
pub fn template(sh: &Shell, helm: &Path, args: &ChartArgs, cancel: &CancellationToken) -> anyhow::Result<HelmOutput> {
    let (release, chart) = (&args.release, &args.chart);
    let flags = args.values_flags();
    run(cmd!(sh, "{helm} template {release} {chart} {flags...}"), cancel)
}

/// The error of a helm command stopped by its cancellation token.
pub const INTERRUPTED: &str = "interrupted";

fn run(command: xshell::Cmd<'_>, cancel: &CancellationToken) -> anyhow::Result<HelmOutput> {
    let shown = command.to_string();
    let ran = crate::process::run(command, cancel, std::time::Duration::from_secs(5))
        .with_context(|| format!("could not run `{shown}` (is helm on PATH, or the stand-in installed?)"))?;
    let output = match ran {
        crate::process::Ran::Exited(output) => output,
        crate::process::Ran::Cancelled => anyhow::bail!(INTERRUPTED),
    };
    Ok(HelmOutput {
        command: shown,
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_flags_keep_helm_order() {
        let args = ChartArgs {
            release: "cp".into(),
            chart: "helm/control-plane".into(),
            values_files: vec!["a.yaml".into(), "b.yaml".into()],
            set: vec!["image.tag=1.2.3".into()],
            namespace: Some("staging".into()),
        };
        assert_eq!(
            args.values_flags(),
            ["-f", "a.yaml", "-f", "b.yaml", "--set", "image.tag=1.2.3", "--namespace", "staging"]
        );
    }

    #[test]
    fn missing_helm_is_a_clear_error() {
        let sh = Shell::new().unwrap();
        let args = ChartArgs {
            release: "cp".into(),
            chart: "chart".into(),
            values_files: vec![],
            set: vec![],
            namespace: None,
        };
        let err = lint(&sh, Path::new("/nonexistent/helm"), &args, &CancellationToken::new()).unwrap_err();
        assert!(format!("{err:#}").contains("is helm on PATH"), "{err:#}");
    }

    #[test]
    fn error_summary_prefers_helm_error_lines() {
        let out = HelmOutput {
            command: "helm lint".into(),
            exit_code: Some(1),
            stdout: "==> Linting c\n[INFO] Chart.yaml: icon is recommended\n[ERROR] templates/: boom\n".into(),
            stderr: "Error: 1 chart(s) linted, 1 chart(s) failed\n".into(),
        };
        assert_eq!(out.error_summary(), "[ERROR] templates/: boom\nError: 1 chart(s) linted, 1 chart(s) failed");
    }
}
