//! Server-side dry-run apply of rendered objects, run only when an environment names a Kubernetes context.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::core::{GroupVersionKind, TypeMeta};
use kube::discovery::{self, Scope};

use super::objects::RenderedObject;

/// The field manager the API server records for the dry-run apply.
const FIELD_MANAGER: &str = "xtask-rehearsal";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunOutcome {
    /// Nothing was sent: the reason says why (no context configured).
    NotRun { reason: String },
    /// Every object was accepted by the API server.
    Accepted { objects: Vec<String> },
    /// The objects the API server refused, with its message.
    Rejected {
        accepted: Vec<String>,
        rejected: Vec<(String, String)>,
    },
}

/// Asks the cluster of `context` to validate every object with a server-side apply dry run.
/// With no context there is no cluster to ask, which is reported, not treated as a pass.
pub async fn server_side_dry_run(
    context: Option<&str>,
    namespace: &str,
    objects: &[RenderedObject],
) -> anyhow::Result<DryRunOutcome> {
    let Some(context) = context else {
        return Ok(DryRunOutcome::NotRun {
            reason: "not run: no cluster (the environment names no Kubernetes context)".into(),
        });
    };
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_kubeconfig(&options).await?;
    let client = kube::Client::try_from(config)?;
    let params = PatchParams::apply(FIELD_MANAGER).dry_run();
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    for object in objects {
        match apply_one(&client, namespace, object, &params).await {
            Ok(()) => accepted.push(object.id()),
            Err(err) => rejected.push((object.id(), format!("{err:#}"))),
        }
    }
    Ok(if rejected.is_empty() {
        DryRunOutcome::Accepted { objects: accepted }
    } else {
        DryRunOutcome::Rejected { accepted, rejected }
    })
}

async fn apply_one(
    client: &kube::Client,
    namespace: &str,
    object: &RenderedObject,
    params: &PatchParams,
) -> anyhow::Result<()> {
    let types = TypeMeta {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
    };
    let gvk = GroupVersionKind::try_from(&types)?;
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await?;
    let namespace = object.namespace.as_deref().unwrap_or(namespace);
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let body: DynamicObject = serde_json::from_value(object.value.clone())?;
    api.patch(&object.name, params, &Patch::Apply(&body))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::objects::parse_rendered;
    use super::*;

    #[tokio::test]
    async fn without_a_context_nothing_runs_and_says_so() {
        let objects = parse_rendered(include_str!("../../tests/fixtures/helm/good.yaml")).unwrap();
        let outcome = server_side_dry_run(None, "default", &objects)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            DryRunOutcome::NotRun {
                reason: "not run: no cluster (the environment names no Kubernetes context)".into()
            }
        );
    }
}
