//! `helm`: `helm lint --strict`, `helm template`, typed parse of every rendered object, policies, and a
//! server-side dry run when a cluster is named — each a gate, stopping at the first that fails.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{StageCx, StageResult};
use crate::config::HelmStage;
use crate::helm::cluster::{ClusterTarget, DryRunOutcome, server_side_dry_run};
use crate::helm::{self, ChartArgs, PolicyInput};
use crate::run::record::{GateRecord, Status};

pub async fn run(spec: &HelmStage, cx: &StageCx<'_>) -> StageResult {
    let base = cx.base_dir.to_path_buf();
    let owned = spec.clone();
    let cancel = cx.cancel.clone();
    let checked = tokio::task::spawn_blocking(move || offline_checks(&owned, &base, &cancel)).await;
    let (mut gates, objects) = match checked {
        Ok(Ok(result)) => result,
        Ok(Err(_)) if cx.cancel.is_cancelled() => {
            return StageResult {
                status: Some(Status::Interrupted),
                reason: Some("interrupted; helm was stopped".into()),
                ..Default::default()
            };
        }
        Ok(Err(e)) => return failed(format!("{e:#}")),
        Err(e) => return failed(format!("{e}")),
    };
    if let Some(objects) = objects {
        gates.push(dry_run(spec, &objects).await);
    }
    StageResult { gates, ..Default::default() }
}

fn failed(reason: String) -> StageResult {
    StageResult { status: Some(Status::Failed), reason: Some(reason), ..Default::default() }
}

type Checked = (Vec<GateRecord>, Option<Vec<helm::RenderedObject>>);

/// Lint, template, parse, policies: each recorded; the objects when all passed.
fn offline_checks(spec: &HelmStage, base: &std::path::Path, cancel: &CancellationToken) -> anyhow::Result<Checked> {
    let sh = xshell::Shell::new()?;
    let helm_bin = helm_binary(&sh, spec, base)?;
    let args = ChartArgs {
        release: spec.release.clone().unwrap_or_else(|| "rehearsal".into()),
        chart: base.join(&spec.chart),
        values_files: spec.values.iter().map(|v| base.join(&spec.chart).join(v)).collect(),
        set: spec.set.clone(),
        namespace: spec.namespace.clone(),
    };
    let mut gates = Vec::new();
    let lint = helm::render::lint(&sh, &helm_bin, &args, cancel)?;
    gates.push(GateRecord::judged("helm lint --strict", "helm_lint", lint.success(), "no lint errors", summary(&lint)));
    if !lint.success() {
        return Ok((gates, None));
    }
    let template = helm::render::template(&sh, &helm_bin, &args, cancel)?;
    gates.push(GateRecord::judged(
        "helm template",
        "helm_template",
        template.success(),
        "the chart renders",
        summary(&template),
    ));
    if !template.success() {
        return Ok((gates, None));
    }
    let objects = match helm::parse_rendered(&template.stdout) {
        Ok(objects) => {
            let ids: Vec<String> = objects.iter().map(|o| o.id()).collect();
            gates.push(GateRecord::judged(
                "typed objects",
                "helm_objects",
                true,
                "every object is valid Kubernetes",
                ids.join(", "),
            ));
            objects
        }
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            gates.push(GateRecord::judged(
                "typed objects",
                "helm_objects",
                false,
                "every object is valid Kubernetes",
                text.join("; "),
            ));
            return Ok((gates, None));
        }
    };
    let input = PolicyInput {
        expected_image_tag: spec.image_tag.clone(),
        liveness_path: spec.liveness_path.clone(),
        readiness_path: spec.readiness_path.clone(),
        required_env: spec.required_env.clone(),
    };
    let violations = helm::check_policies(&objects, &input);
    let expected = format!(
        "requests and limits, probes on {} and {}, pinned image tag{}, runAsNonRoot",
        spec.liveness_path,
        spec.readiness_path,
        spec.image_tag.as_deref().map(|t| format!(" `{t}`")).unwrap_or_default()
    );
    let actual = if violations.is_empty() {
        format!("{} objects comply", objects.len())
    } else {
        violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
    };
    gates.push(GateRecord::judged("policies", "helm_policy", violations.is_empty(), expected, actual));
    Ok((gates, violations.is_empty().then_some(objects)))
}

async fn dry_run(spec: &HelmStage, objects: &[helm::RenderedObject]) -> GateRecord {
    let target = spec.kube_context.as_ref().map(|context| ClusterTarget {
        context: context.clone(),
        kubeconfig: None,
        namespace: spec.namespace.clone().unwrap_or_else(|| "default".into()),
    });
    let expected = "the cluster accepts every object (server-side dry run)";
    let mut gate = match server_side_dry_run(target.as_ref(), objects).await {
        Ok(DryRunOutcome::NotRun { reason }) => {
            let mut g = GateRecord::judged("cluster dry run", "helm_dry_run", true, expected, reason);
            g.status = Status::NotRun;
            g
        }
        Ok(DryRunOutcome::Accepted { objects }) => GateRecord::judged(
            "cluster dry run",
            "helm_dry_run",
            true,
            expected,
            format!("accepted {}", objects.join(", ")),
        ),
        Ok(DryRunOutcome::Rejected { rejected, .. }) => {
            let text: Vec<String> = rejected.iter().map(|(o, why)| format!("{o}: {why}")).collect();
            GateRecord::judged("cluster dry run", "helm_dry_run", false, expected, text.join("; "))
        }
        Err(e) => GateRecord::judged("cluster dry run", "helm_dry_run", false, expected, format!("{e:#}")),
    };
    gate.target = "kubernetes".into();
    gate
}

fn summary(out: &helm::HelmOutput) -> String {
    if out.success() {
        format!("`{}` exited 0", out.command)
    } else {
        format!("`{}` exited {:?}: {}", out.command, out.exit_code, out.error_summary())
    }
}

/// The configured helm, else `helm` on PATH, else the repository's stand-in (installed on first use).
fn helm_binary(sh: &xshell::Shell, spec: &HelmStage, base: &std::path::Path) -> anyhow::Result<PathBuf> {
    if let Some(helm) = &spec.helm {
        return Ok(base.join(helm));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("helm")).find(|h| h.is_file()))
        .unwrap_or_default();
    match on_path {
        Some(helm) => Ok(helm),
        None => Ok(helm::standin::ensure(sh, base)?.join("helm")),
    }
}
