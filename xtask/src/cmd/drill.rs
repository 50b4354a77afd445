//! `cargo xtask drill <name>`: one drill stage, the stages it needs (transitively) and the cleanup
//! stages, run like `deploy --only …`; `--list` names the drill stages.

use std::process::ExitCode;

use super::deploy::{DeployArgs, Output};
use super::plan::SelectArgs;
use super::{EXIT_INVALID, EXIT_PASSED, PipelineArgs, Secrets, builtins, load};
use crate::config::{Pipeline, StageSpec};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DrillArgs {
    /// The drill stage to run.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// List the drill stages and exit.
    #[arg(long)]
    pub list: bool,
    /// Run every selected stage even after a failure; fail at the end.
    #[arg(long)]
    pub keep_going: bool,
    /// Templates replacing the built-in report templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<std::path::PathBuf>,
    /// When another run holds the environment, wait up to this long for it instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_lock: Option<std::time::Duration>,
}

pub async fn run(args: &PipelineArgs, drill: &DrillArgs, out: &Output) -> ExitCode {
    let git = crate::git::inspect(std::path::Path::new("."));
    let loaded = match load(args, Secrets::Placeholder, builtins("<run-id>", &git)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let drills = drill_stages(&loaded.pipeline);
    if drill.list {
        for (name, drill_type, target) in &drills {
            println!("{name}\t{drill_type}\t{target}");
        }
        return ExitCode::from(EXIT_PASSED);
    }
    let name = drill.name.clone().unwrap_or_default();
    if !drills.iter().any(|(n, _, _)| *n == name) {
        let names: Vec<&str> = drills.iter().map(|(n, _, _)| n.as_str()).collect();
        let hint = crate::config::diag::nearest(&name, names.iter().copied())
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
        eprintln!("error: no drill stage is named `{name}`{hint} (drill stages: {})", names.join(", "));
        return ExitCode::from(EXIT_INVALID);
    }
    let only = crate::plan::with_needs(&loaded.pipeline, &name);
    let deploy = DeployArgs {
        select: SelectArgs { only, from: None, skip: Vec::new() },
        keep_going: drill.keep_going,
        dry_run: false,
        templates: drill.templates.clone(),
        wait_lock: drill.wait_lock,
    };
    super::deploy::run(args, &deploy, out).await
}

/// (name, drill type, target) of every drill stage.
fn drill_stages(pipeline: &Pipeline) -> Vec<(String, &'static str, String)> {
    pipeline
        .stages
        .iter()
        .filter_map(|s| match &s.spec {
            StageSpec::Drill(d) => {
                Some((s.name().to_string(), d.type_name(), crate::redact::redact(&d.target()).into_owned()))
            }
            _ => None,
        })
        .collect()
}
