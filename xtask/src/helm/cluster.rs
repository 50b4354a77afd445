//! Server-side dry-run apply of rendered objects, run only when an environment names a Kubernetes context.

use std::path::PathBuf;

use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{GroupVersionKind, TypeMeta};
use kube::discovery::{self, Scope};
use kube::error::DiscoveryError;

use super::objects::RenderedObject;

/// The field manager the API server records for the dry-run apply.
const FIELD_MANAGER: &str = "xtask-rehearsal";

/// The cluster an environment deploys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    pub context: String,
    /// `None` reads the usual kubeconfig (`KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// For objects whose metadata names no namespace.
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunOutcome {
    /// Nothing was sent: the reason says why (no context configured).
    NotRun { reason: String },
    /// Every object was accepted by the API server.
    Accepted { objects: Vec<String> },
    /// The objects the API server refused, with its message.
    Rejected { accepted: Vec<String>, rejected: Vec<(String, String)> },
}

/// Asks the cluster to validate every object with a server-side apply dry run. With no target
/// there is no cluster to ask, which is reported, not treated as a pass. `Err` means the
/// cluster could not be asked (bad kubeconfig, unreachable API server), not that it refused.
pub async fn server_side_dry_run(
    target: Option<&ClusterTarget>,
    objects: &[RenderedObject],
) -> anyhow::Result<DryRunOutcome> {
    let Some(target) = target else {
        return Ok(DryRunOutcome::NotRun {
            reason: "not run: no cluster (the environment names no Kubernetes context)".into(),
        });
    };
    let client = client(target).await?;
    let params = PatchParams::apply(FIELD_MANAGER).dry_run();
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    for object in objects {
        match apply_one(&client, &target.namespace, object, &params).await {
            Ok(()) => accepted.push(object.id()),
            // The API server answered (or the apiVersion cannot be asked about): this object
            // is refused, the others are still worth asking.
            Err(err @ (kube::Error::Api(_) | kube::Error::Discovery(_))) => {
                rejected.push((object.id(), err.to_string()))
            }
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("cluster of context {:?} could not be asked about {}", target.context, object.id())
                });
            }
        }
    }
    Ok(if rejected.is_empty() {
        DryRunOutcome::Accepted { objects: accepted }
    } else {
        DryRunOutcome::Rejected { accepted, rejected }
    })
}

async fn client(target: &ClusterTarget) -> anyhow::Result<kube::Client> {
    // With more than one rustls provider compiled in (bollard may bring aws-lc-rs), rustls
    // refuses to pick one, so kube's TLS set-up would fail; an already installed one is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions { context: Some(target.context.clone()), ..Default::default() };
    let config = match &target.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .with_context(|| format!("loading Kubernetes context {:?}", target.context))?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

async fn apply_one(
    client: &kube::Client,
    namespace: &str,
    object: &RenderedObject,
    params: &PatchParams,
) -> Result<(), kube::Error> {
    let types = TypeMeta { api_version: object.api_version.clone(), kind: object.kind.clone() };
    let gvk = GroupVersionKind::try_from(&types)
        .map_err(|err| kube::Error::Discovery(DiscoveryError::InvalidGroupVersion(err.to_string())))?;
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await?;
    let namespace = object.namespace.as_deref().unwrap_or(namespace);
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let body: DynamicObject = serde_json::from_value(object.value.clone()).map_err(kube::Error::SerdeError)?;
    api.patch(&object.name, params, &Patch::Apply(&body)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::objects::parse_rendered;
    use super::*;

    fn objects() -> Vec<RenderedObject> {
        parse_rendered(include_str!("../../tests/fixtures/helm/good.yaml")).unwrap()
    }

    #[tokio::test]
    async fn without_a_context_nothing_runs_and_says_so() {
        let outcome = server_side_dry_run(None, &objects()).await.unwrap();
        assert_eq!(
            outcome,
            DryRunOutcome::NotRun {
                reason: "not run: no cluster (the environment names no Kubernetes context)".into()
            }
        );
    }

    #[tokio::test]
    async fn unreachable_api_server_is_an_error_not_a_rejection() {
        // A port nothing listens on: bind one, note it, and close it again.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("config");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: rehearsal\n  context:\n    cluster: gone\n    user: nobody\n\
                 current-context: rehearsal\n"
            ),
        )
        .unwrap();
        let target =
            ClusterTarget { context: "rehearsal".into(), kubeconfig: Some(kubeconfig), namespace: "default".into() };
        let err = server_side_dry_run(Some(&target), &objects()).await.unwrap_err();
        assert!(format!("{err:#}").contains("could not be asked"), "{err:#}");
    }

    #[tokio::test]
    async fn unknown_context_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("config");
        std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n").unwrap();
        let target =
            ClusterTarget { context: "nope".into(), kubeconfig: Some(kubeconfig), namespace: "default".into() };
        let err = server_side_dry_run(Some(&target), &objects()).await.unwrap_err();
        assert!(format!("{err:#}").contains("loading Kubernetes context \"nope\""), "{err:#}");
    }
}
