//! Loading `pipeline.yaml`: text → located tree → variables resolved → typed pipeline → cross-checks.

pub mod check;
pub mod data_gates;
pub mod de;
pub mod diag;
pub mod drills;
pub mod faults;
#[cfg(test)]
mod fuzz;
pub mod interp;
mod marked;
pub mod model;
pub mod schema;
pub mod security_gates;
pub mod source;
pub mod stage;
pub mod tree;

use std::collections::BTreeMap;
use std::path::Path;

pub use diag::{Diagnostic, Diagnostics};
pub use model::*;
pub use source::Source;

use tree::{Node, Value};

/// Files larger than this are refused before parsing: a pipeline is a few hundred lines.
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// What a load needs besides the file: the environment to resolve and how to find values.
pub struct LoadOptions<'a> {
    pub env: Option<&'a str>,
    /// `--var NAME=VALUE` overrides, strongest of all.
    pub overrides: &'a BTreeMap<String, String>,
    /// Built-in variables such as `GIT_SHA` and `RUN_ID`.
    pub builtins: &'a BTreeMap<String, String>,
    pub lookup_env: &'a dyn Fn(&str) -> Option<String>,
    /// Resolves a declared secret's value; called only for secrets the file uses.
    pub secret: &'a dyn Fn(&str, &SecretSpec) -> Result<String, String>,
}

pub fn read_source(path: &Path) -> Result<Source, Diagnostics> {
    let fail = |message: String| Diagnostics { source: Source::new(path, ""), items: vec![Diagnostic::new(message)] };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() > MAX_BYTES {
        return Err(fail(format!("file is {} bytes; a pipeline file may be at most {MAX_BYTES}", bytes.len())));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(path, text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let line = text[..at.min(text.len())].matches('\n').count() + 1;
            let col = text[..at.min(text.len())].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(Diagnostics {
                source: Source::new(path, text),
                items: vec![
                    Diagnostic::new(format!("not UTF-8 text (invalid byte at offset {at})"))
                        .at(source::Span::new(line, col, 1))
                        .expected("a YAML text file"),
                ],
            })
        }
    }
}

pub fn load(source: &Source, options: &LoadOptions) -> Result<Pipeline, Diagnostics> {
    let fail = |items: Vec<Diagnostic>| Diagnostics { source: source.clone(), items };
    let mut root = tree::parse(&source.text).map_err(|d| fail(vec![d]))?;
    check_root(&root).map_err(|d| fail(vec![d]))?;
    let mut errors = Vec::new();
    let secret_vars = marked::unmark(&mut root, &mut errors);
    errors.extend(interpolate_variables(&mut root, options));
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let header_raw: Header = de::from_node(&root).map_err(|d| fail(vec![d]))?;
    let env = resolve_env(&header_raw, &root, options).map_err(|d| fail(vec![d]))?;

    let vars = variables(&header_raw, &env, options);
    let secret_values =
        secret_vars.iter().filter_map(|name| vars.get(name)).filter(|v| !v.is_empty()).cloned().collect();
    let mut errors = Vec::new();
    let secret = |name: &str| match header_raw.secrets.get(name) {
        Some(spec) => (options.secret)(name, spec),
        None => {
            let declared: Vec<&str> = header_raw.secrets.keys().map(String::as_str).collect();
            let near = diag::nearest(name, declared).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
            Err(format!("declare it under `secrets:` first{near}"))
        }
    };
    let scope = interp::Scope { vars: &vars, env: options.lookup_env, secret: &secret };
    if let Value::Map(entries) = &mut root.value {
        for (key, value) in entries.iter_mut() {
            // Variables were resolved above; environments hold only overrides of them.
            if !matches!(key.as_str(), Some("variables" | "environments")) {
                interp::interpolate(value, &scope, &mut errors);
            }
        }
    }
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let header: Header = de::from_node(&root).map_err(|d| fail(vec![d]))?;
    let stages = stage::read_stages(root.get("stages"), &mut errors);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let errors = check::check(&header, &stages, &root);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    Ok(Pipeline { header, stages, env, secret_values })
}

/// The root must be a mapping with a known `version`, checked first: a wrong version explains everything else.
fn check_root(root: &Node) -> Result<(), Diagnostic> {
    if root.as_map().is_none() {
        let d = Diagnostic::new("a pipeline file must be a mapping at the top level")
            .expected("`version: 1` followed by `stages:`")
            .found(root.describe());
        return Err(if matches!(root.value, Value::Null) { d } else { d.at(root.span) });
    }
    let Some(version) = root.get("version") else {
        return Err(Diagnostic::new("missing key `version`")
            .at(source::Span::new(1, 1, 1))
            .help("start the file with `version: 1`"));
    };
    match version.as_str().map(str::trim) {
        Some("1") => Ok(()),
        _ => Err(Diagnostic::new("unsupported pipeline version")
            .at(version.span)
            .expected(format!("`{}`", model::SCHEMA_VERSION))
            .found(version.describe())),
    }
}

fn resolve_env(header: &Header, root: &Node, options: &LoadOptions) -> Result<String, Diagnostic> {
    let env = options.env.unwrap_or(model::DEFAULT_ENV);
    let known = check::known_environments(&header.environments);
    if known.contains(&env) {
        return Ok(env.to_string());
    }
    let d = Diagnostic::new(format!("unknown environment `{env}` (from --env)"))
        .expected(format!("one of {}", known.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")))
        .suggest(env, known.iter().copied());
    Err(match root.key("environments") {
        Some(key) => d.at(key.span),
        None => d,
    })
}

/// Variables resolve in the order written. A value may use built-ins, the process environment and the
/// variables above it as finally set (environment overrides and `--var` applied), so `--var PORT=…` reaches
/// `URL: http://host:${PORT}`. Only the chosen environment's overrides are resolved: another environment's
/// unset variables are its own business.
fn interpolate_variables(root: &mut Node, options: &LoadOptions) -> Vec<Diagnostic> {
    let no_secret =
        |_: &str| Err("secrets cannot be used in `variables:`; use them where the value is needed".to_string());
    let env = options.env.unwrap_or(model::DEFAULT_ENV);
    let mut env_vars = root.get("environments").and_then(|e| e.get(env)).and_then(|e| e.get("variables")).cloned();
    let mut known = options.builtins.clone();
    let mut errors = Vec::new();
    let mut resolve_into = |name: String, node: &mut Node, known: &mut BTreeMap<String, String>| {
        interp::interpolate(
            node,
            &interp::Scope { vars: known, env: options.lookup_env, secret: &no_secret },
            &mut errors,
        );
        if let Some(value) = options.overrides.get(&name).cloned().or_else(|| node.as_str().map(str::to_string)) {
            known.insert(name, value);
        }
    };
    if let Some(Value::Map(entries)) = root.get_mut("variables").map(|v| &mut v.value) {
        for (key, value) in entries.iter_mut() {
            let Some(name) = key.as_str().map(str::to_string) else { continue };
            // The environment's value replaces the pipeline's, so only the one in force is resolved.
            match env_vars.as_mut().and_then(|e| e.get_mut(&name)) {
                Some(overridden) => resolve_into(name, overridden, &mut known),
                None => resolve_into(name, value, &mut known),
            }
        }
    }
    if let Some(Value::Map(entries)) = env_vars.as_mut().map(|v| &mut v.value) {
        let declared = root.get("variables");
        for (key, value) in entries.iter_mut() {
            let Some(name) = key.as_str().map(str::to_string) else { continue };
            if declared.and_then(|d| d.get(&name)).is_none() {
                resolve_into(name, value, &mut known);
            }
        }
    }
    if let (Some(resolved), Some(slot)) =
        (env_vars, root.get_mut("environments").and_then(|e| e.get_mut(env)).and_then(|e| e.get_mut("variables")))
    {
        *slot = resolved;
    }
    errors
}

/// Builtins < pipeline variables < the environment's overrides < `--var`.
fn variables(header: &Header, env: &str, options: &LoadOptions) -> BTreeMap<String, String> {
    let mut vars = options.builtins.clone();
    vars.extend(header.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(overrides) = header.environments.get(env) {
        vars.extend(overrides.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    vars.extend(options.overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_vars(text: &str, env: Option<&str>, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        let overrides: BTreeMap<String, String> =
            overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let options = LoadOptions {
            env,
            overrides: &overrides,
            builtins: &BTreeMap::new(),
            lookup_env: &|_| None,
            secret: &|_, _| Err("none".into()),
        };
        let pipeline = load(&Source::new("pipeline.yaml", text), &options).expect("loads");
        variables(&pipeline.header, &pipeline.env, &options)
    }

    const PIPELINE: &str = "version: 1
variables:
  PORT: \"8080\"
  URL: http://h:${PORT}
environments:
  staging:
    variables: { PORT: \"9090\", HEALTH: \"${URL}/health\" }
stages:
  - { name: s, kind: command, program: \"true\" }
";

    #[test]
    fn variables_see_the_ones_above_them_as_finally_set() {
        assert_eq!(load_vars(PIPELINE, None, &[])["URL"], "http://h:8080");
        assert_eq!(load_vars(PIPELINE, None, &[("PORT", "1")])["URL"], "http://h:1");
        let staging = load_vars(PIPELINE, Some("staging"), &[]);
        assert_eq!(staging["URL"], "http://h:9090");
        assert_eq!(staging["HEALTH"], "http://h:9090/health");
    }
}
