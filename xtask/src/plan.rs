//! The plan: which stages of the loaded pipeline run, in what dependency order, against what.

use serde::Serialize;

use crate::config::check::dependencies;
use crate::config::diag::nearest;
use crate::config::{Pipeline, When};

/// `--only`, `--from`, `--skip`.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub only: Vec<String>,
    pub from: Option<String>,
    pub skip: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub environment: String,
    pub environment_description: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub when: When,
    /// Indices of the steps this one waits for.
    pub needs: Vec<usize>,
    /// Whether `needs` was written (true) or is the implicit "the stage before".
    pub needs_declared: bool,
    pub target: String,
    pub description: Option<String>,
    /// `None` when the step runs; otherwise why it does not.
    pub skip_reason: Option<String>,
    pub gates: Vec<PlannedGate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedGate {
    pub name: String,
    pub description: Option<String>,
    pub kind: String,
    pub target: String,
    pub checklist: Vec<String>,
}

impl Step {
    pub fn runs(&self) -> bool {
        self.skip_reason.is_none()
    }

    pub fn is_cleanup(&self) -> bool {
        self.when != When::OnSuccess
    }
}

/// `name` and every stage it needs, directly or through others, in pipeline order.
pub fn with_needs(pipeline: &Pipeline, name: &str) -> Vec<String> {
    let deps = dependencies(&pipeline.stages);
    let mut wanted = vec![false; pipeline.stages.len()];
    let mut todo: Vec<usize> = pipeline.stages.iter().position(|s| s.name() == name).into_iter().collect();
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut wanted[i], true) {
            todo.extend(&deps[i]);
        }
    }
    pipeline.stages.iter().zip(wanted).filter(|(_, w)| *w).map(|(s, _)| s.name().to_string()).collect()
}

/// The gates a drill holds inside its faults, so `plan` shows them too.
fn drill_gates(spec: &crate::config::StageSpec) -> Vec<&crate::config::Gate> {
    match spec {
        crate::config::StageSpec::Drill(d) => d.gates(),
        _ => Vec::new(),
    }
}

/// Builds the plan; errors are unknown stage names on the command line, each with a suggestion.
pub fn build(pipeline: &Pipeline, selector: &Selector) -> Result<Plan, Vec<String>> {
    let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name()).collect();
    let mut errors = Vec::new();
    let mentioned = selector.only.iter().chain(&selector.skip).chain(&selector.from);
    for name in mentioned {
        if !names.contains(&name.as_str()) {
            let hint =
                nearest(name, names.iter().copied()).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
            errors.push(format!("no stage is named `{name}`{hint}"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let from = selector.from.as_ref().and_then(|f| names.iter().position(|n| n == f));
    let deps = dependencies(&pipeline.stages);
    let steps = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let name = stage.name().to_string();
            let in_env = stage.common.environments.as_ref().is_none_or(|envs| envs.contains(&pipeline.env));
            let skip_reason = if !in_env {
                let envs = stage.common.environments.clone().unwrap_or_default().join(", ");
                Some(format!("not run: only in environment {envs}"))
            } else if selector.skip.contains(&name) {
                Some("skipped by --skip".into())
            } else if !selector.only.is_empty()
                && !selector.only.contains(&name)
                && stage.common.when == When::OnSuccess
            {
                Some("not selected by --only".into())
            } else if from.is_some_and(|f| index < f) && stage.common.when == When::OnSuccess {
                Some("before --from".into())
            } else {
                None
            };
            Step {
                index,
                name,
                kind: stage.common.kind.clone(),
                when: stage.common.when,
                needs: deps[index].clone(),
                needs_declared: stage.common.needs.is_some(),
                target: crate::redact::redact(&stage.spec.target()).into_owned(),
                description: stage.common.description.clone(),
                skip_reason,
                gates: stage
                    .gates
                    .iter()
                    .chain(drill_gates(&stage.spec))
                    .map(|g| PlannedGate {
                        name: g.name(),
                        description: g.common.description.clone(),
                        kind: g.kind().to_string(),
                        target: crate::redact::redact(&g.spec.target()).into_owned(),
                        checklist: g.common.checklist.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let environment_description = pipeline.header.environments.get(&pipeline.env).and_then(|e| e.description.clone());
    Ok(Plan { environment: pipeline.env.clone(), environment_description, steps })
}
