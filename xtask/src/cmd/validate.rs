//! `cargo xtask validate`: load and check pipeline.yaml, run nothing.

use std::process::ExitCode;

use super::{EXIT_PASSED, PipelineArgs, Secrets, builtins, load};

pub fn run(args: &PipelineArgs) -> ExitCode {
    let git = crate::git::inspect(std::path::Path::new("."));
    let loaded = match load(args, Secrets::Placeholder, builtins("validate", &git)) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let p = &loaded.pipeline;
    let gates: usize = p.stages.iter().map(|s| s.gates.len()).sum();
    println!(
        "{}: valid ({} stages, {gates} gates, {} checklist items, {} sign-offs; environment `{}`)",
        loaded.file.display(),
        p.stages.len(),
        p.header.checklist.len(),
        p.header.signoffs.len(),
        p.env
    );
    let uncovered = uncovered_items(p);
    if !uncovered.is_empty() {
        println!(
            "note: {} checklist item(s) have neither a gate nor a sign-off: {}",
            uncovered.len(),
            uncovered.join(", ")
        );
    }
    ExitCode::from(EXIT_PASSED)
}

fn uncovered_items(p: &crate::config::Pipeline) -> Vec<String> {
    p.header
        .checklist
        .iter()
        .filter(|item| {
            let gated = p.stages.iter().any(|s| {
                s.common.checklist.contains(&item.id)
                    || s.gates.iter().any(|g| g.common.checklist.contains(&item.id))
                    || matches!(&s.spec, crate::config::StageSpec::Bench(b) if b.thresholds.iter().any(|t| t.checklist.contains(&item.id)))
                    || matches!(&s.spec, crate::config::StageSpec::Drill(d) if d.checklist().contains(&&item.id))
            });
            let signed = p.header.signoffs.iter().any(|s| s.checklist == item.id);
            !gated && !signed
        })
        .map(|item| item.id.clone())
        .collect()
}
