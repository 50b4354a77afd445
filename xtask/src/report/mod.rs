//! Reports rendered from a run record with minijinja: report.md (the sign-off document),
//! report.html and junit.xml. The built-in templates are `templates/` at the repository root.

use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, Value, context};

use crate::run::record::{RunRecord, Status};

/// Output file name and built-in template.
const REPORTS: &[(&str, &str)] = &[
    ("report.md", include_str!("../../../templates/report.md")),
    ("report.html", include_str!("../../../templates/report.html")),
    ("junit.xml", include_str!("../../../templates/junit.xml")),
];

/// Renders every report into `dir`; `templates` replaces built-in templates of the same name.
pub fn render_all(record: &RunRecord, dir: &Path, templates: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let env = environment(templates)?;
    let totals = totals(record);
    let mut written = Vec::new();
    for (name, _) in REPORTS {
        let template = env.get_template(name)?;
        let text = template
            .render(context! { run => Value::from_serialize(record), totals => totals })
            .map_err(|e| anyhow::anyhow!("template {name}: {e:#}"))?;
        let path = dir.join(name);
        std::fs::write(&path, crate::redact::redact(&text).as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

fn environment(templates: Option<&Path>) -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    // Stages differ in their outputs: a missing one reads as empty, not as an error.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".xml") { AutoEscape::Html } else { AutoEscape::None }
    });
    for (name, builtin) in REPORTS {
        let text = match templates.map(|dir| dir.join(name)).filter(|p| p.exists()) {
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read template {}: {e}", path.display()))?,
            None => builtin.to_string(),
        };
        env.add_template_owned(name.to_string(), text).map_err(|e| anyhow::anyhow!("template {name}: {e:#}"))?;
    }
    env.add_filter("seconds", |ms: u64| format!("{:.1}s", ms as f64 / 1000.0));
    env.add_filter("seconds_raw", |ms: u64| format!("{:.3}", ms as f64 / 1000.0));
    env.add_filter("badge", badge);
    env.add_filter("ms", |v: f64| format!("{v:.1} ms"));
    env.add_filter("fixed", |v: f64, places: usize| format!("{v:.places$}"));
    env.add_filter("cell", |text: String| text.replace('|', "\\|").replace('\n', " "));
    Ok(env)
}

fn badge(status: String) -> String {
    let icon = match status.as_str() {
        "passed" | "signed" => "✅",
        "failed" => "❌",
        "interrupted" => "⚠️",
        _ => "⏭️",
    };
    format!("{icon} {status}")
}

#[derive(serde::Serialize)]
struct Totals {
    tests: usize,
    failures: usize,
    skipped: usize,
}

fn totals(record: &RunRecord) -> Totals {
    let gates = || record.stages.iter().flat_map(|s| &s.gates);
    Totals {
        tests: gates().count(),
        failures: gates().filter(|g| g.status == Status::Failed).count(),
        skipped: gates().filter(|g| !matches!(g.status, Status::Passed | Status::Failed)).count(),
    }
}

/// Appends report.md to the GitHub Actions job summary when running there.
pub fn append_step_summary(dir: &Path) -> anyhow::Result<()> {
    let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let text = std::fs::read_to_string(dir.join("report.md"))?;
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(summary)?;
    writeln!(file, "{text}")?;
    Ok(())
}
