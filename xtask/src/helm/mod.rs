//! Helm chart validation: lint and render with helm, parse into typed objects, check the policies.

pub mod cluster;
pub mod objects;
pub mod policy;
pub mod render;
pub mod standin;

#[cfg(test)]
mod chart_tests;

#[cfg(test)]
use std::path::Path;

#[cfg(test)]
use xshell::Shell;

#[cfg(test)]
pub use objects::ParseProblem;
pub use objects::{RenderedObject, parse_rendered};
#[cfg(test)]
pub use policy::Violation;
pub use policy::{PolicyInput, check_policies};
pub use render::{ChartArgs, HelmOutput};

/// The step of a chart check that failed first; later steps did not run.
/// The first failing step of a chart check (the `helm` stage records each step as its own gate;
/// the chart tests use this to assert which step fails).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartFailure {
    Lint(HelmOutput),
    Template(HelmOutput),
    Parse(Vec<ParseProblem>),
    Policy(Vec<Violation>),
}

#[cfg(test)]
impl std::fmt::Display for ChartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChartFailure::Lint(out) => write!(f, "helm lint failed:\n{}", out.error_summary()),
            ChartFailure::Template(out) => {
                write!(f, "helm template failed:\n{}", out.error_summary())
            }
            ChartFailure::Parse(problems) => {
                writeln!(f, "the rendering has {} invalid field(s):", problems.len())?;
                problems.iter().try_for_each(|p| writeln!(f, "  {p}"))
            }
            ChartFailure::Policy(violations) => {
                writeln!(f, "{} policy violation(s):", violations.len())?;
                violations.iter().try_for_each(|v| writeln!(f, "  {v}"))
            }
        }
    }
}

/// What a passing check produced: the rendering and its objects, for a later cluster dry run.
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct ChartChecked {
    pub lint: HelmOutput,
    pub rendered: String,
    pub objects: Vec<RenderedObject>,
}

/// Lints (strict), renders, parses and checks one chart; `Err` only when helm could not be run.
#[cfg(test)]
pub fn check_chart(
    sh: &Shell,
    helm: &Path,
    args: &ChartArgs,
    input: &PolicyInput,
) -> anyhow::Result<Result<ChartChecked, ChartFailure>> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let lint = render::lint(sh, helm, args, &cancel)?;
    if !lint.success() {
        return Ok(Err(ChartFailure::Lint(lint)));
    }
    let template = render::template(sh, helm, args, &cancel)?;
    if !template.success() {
        return Ok(Err(ChartFailure::Template(template)));
    }
    let objects = match parse_rendered(&template.stdout) {
        Ok(objects) => objects,
        Err(problems) => return Ok(Err(ChartFailure::Parse(problems))),
    };
    let violations = check_policies(&objects, input);
    if !violations.is_empty() {
        return Ok(Err(ChartFailure::Policy(violations)));
    }
    Ok(Ok(ChartChecked { lint, rendered: template.stdout, objects }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_object_field_message_and_source() {
        let policy = ChartFailure::Policy(vec![Violation {
            object: "Deployment/control-plane".into(),
            field: "spec.template.spec.containers[0].resources.limits.memory".into(),
            message: "container \"control-plane\" has no memory limit".into(),
            source: Some("control-plane/templates/deployment.yaml".into()),
        }]);
        assert_eq!(
            policy.to_string(),
            "1 policy violation(s):\n  Deployment/control-plane spec.template.spec.containers[0].resources.limits.memory: \
             container \"control-plane\" has no memory limit (from control-plane/templates/deployment.yaml)\n"
        );
        let parse = ChartFailure::Parse(vec![ParseProblem {
            source: Some("control-plane/templates/service.yaml".into()),
            object: Some("Service/control-plane".into()),
            field: "spec.ports[0].targetPorts".into(),
            message: "unknown field".into(),
        }]);
        assert_eq!(
            parse.to_string(),
            "the rendering has 1 invalid field(s):\n  control-plane/templates/service.yaml: Service/control-plane: \
             spec.ports[0].targetPorts: unknown field\n"
        );
    }
}
