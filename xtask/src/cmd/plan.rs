//! `cargo xtask plan`: the resolved stages and gates with their targets. No side effects.

use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_PASSED, PipelineArgs, Secrets, builtins, load, split_list};
use crate::plan::{self, Selector};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectArgs {
    /// Run only these stages (comma-separated or repeated).
    #[arg(long, value_name = "STAGE,..")]
    pub only: Vec<String>,
    /// Start at this stage; earlier ones are treated as done.
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Leave out these stages.
    #[arg(long, value_name = "STAGE,..")]
    pub skip: Vec<String>,
}

impl SelectArgs {
    pub fn selector(&self) -> Selector {
        Selector { only: split_list(&self.only), from: self.from.clone(), skip: split_list(&self.skip) }
    }
}

pub fn run(args: &PipelineArgs, select: &SelectArgs, json: bool) -> ExitCode {
    let git = crate::git::inspect(std::path::Path::new("."));
    let loaded = match load(args, Secrets::Placeholder, builtins("<run-id>", &git)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let plan = match plan::build(&loaded.pipeline, &select.selector()) {
        Ok(plan) => plan,
        Err(errors) => return usage_errors(&errors),
    };
    // Variables marked secret have their real values even here.
    if json {
        println!("{}", crate::redact::redact(&serde_json::to_string_pretty(&plan).expect("plans serialize")));
    } else {
        print!("{}", crate::redact::redact(&render(&plan)));
    }
    ExitCode::from(EXIT_PASSED)
}

pub fn usage_errors(errors: &[String]) -> ExitCode {
    for e in errors {
        eprintln!("error: {e}");
    }
    ExitCode::from(EXIT_INVALID)
}

/// The plan as text: one block per stage, its gates indented below it.
pub fn render(plan: &plan::Plan) -> String {
    let about = plan.environment_description.as_deref().map(|d| format!(" — {}", d.trim())).unwrap_or_default();
    let mut out = format!("environment: {}{about}\n", plan.environment);
    for step in &plan.steps {
        let needs: Vec<&str> = step.needs.iter().map(|&i| plan.steps[i].name.as_str()).collect();
        let when = match step.when {
            crate::config::When::OnSuccess => String::new(),
            other => {
                format!(" [cleanup: {}]", serde_json::to_value(other).expect("enums serialize").as_str().unwrap_or(""))
            }
        };
        let status = step.skip_reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default();
        out += &format!("{:>3}. {} ({}){when}{status}\n", step.index + 1, step.name, step.kind);
        if !needs.is_empty() {
            out += &format!("       needs: {}\n", needs.join(", "));
        }
        if let Some(description) = &step.description {
            out += &format!("       {}\n", description.trim());
        }
        out += &format!("       runs: {}\n", step.target);
        for gate in &step.gates {
            let checklist =
                if gate.checklist.is_empty() { String::new() } else { format!(" [{}]", gate.checklist.join(", ")) };
            out += &format!("       gate {} ({}): {}{checklist}\n", gate.name, gate.kind, gate.target);
        }
    }
    out
}
