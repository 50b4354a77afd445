//! `${NAME}`, `${NAME:-default}` and `${secret:NAME}` in scalar values, resolved at load time.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, nearest};
use super::tree::{Node, Value};

/// Where `${…}` references find their values.
pub struct Scope<'a> {
    /// Pipeline variables (environment overrides applied) and built-ins.
    pub vars: &'a BTreeMap<String, String>,
    /// Looks up the process environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Resolves `${secret:NAME}`; `Err` is the reason it cannot.
    pub secret: &'a dyn Fn(&str) -> Result<String, String>,
}

/// Replaces every reference in every scalar below `node` (keys excepted), collecting all errors.
pub fn interpolate(node: &mut Node, scope: &Scope, errors: &mut Vec<Diagnostic>) {
    match &mut node.value {
        Value::Scalar { text, plain } => {
            if text.contains('$') {
                // Quoted scalars start one column after their quote.
                let offset = usize::from(!*plain);
                match expand(text, scope) {
                    Ok(expanded) => *text = expanded,
                    Err((at, len, d)) => errors.push(d.at(node.span.shifted(offset + at, len))),
                }
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|n| interpolate(n, scope, errors)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| interpolate(v, scope, errors)),
        Value::Null => {}
    }
}

/// Expands one string. An error carries the character offset and width of the reference.
pub fn expand(text: &str, scope: &Scope) -> Result<String, (usize, usize, Diagnostic)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed_chars = 0;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let here = consumed_chars + rest[..start].chars().count();
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            consumed_chars = here + 3;
            rest = escaped;
            continue;
        }
        let Some(body_and_rest) = after.strip_prefix('{') else {
            out.push('$');
            consumed_chars = here + 1;
            rest = after;
            continue;
        };
        let Some(end) = body_and_rest.find('}') else {
            let width = text.chars().count() - here;
            return Err((
                here,
                width,
                Diagnostic::new("unclosed `${`")
                    .help("close the reference with `}`, or write `$${` for a literal `${`"),
            ));
        };
        let body = &body_and_rest[..end];
        let width = body.chars().count() + 3;
        let value = resolve(body, scope).map_err(|d| (here, width, d))?;
        out.push_str(&value);
        consumed_chars = here + width;
        rest = &body_and_rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(body: &str, scope: &Scope) -> Result<String, Diagnostic> {
    if let Some(name) = body.strip_prefix("secret:") {
        return (scope.secret)(name)
            .map_err(|why| Diagnostic::new(format!("secret `{name}` is not available")).help(why));
    }
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(Diagnostic::new(format!("`${{{body}}}` is not a valid reference"))
            .expected("`${NAME}`, `${NAME:-default}` or `${secret:NAME}`"));
    }
    if let Some(value) = scope.vars.get(name).cloned().or_else(|| (scope.env)(name)) {
        return Ok(value);
    }
    if let Some(default) = default {
        return Ok(default.to_string());
    }
    let d = Diagnostic::new(format!("variable `{name}` is not set"))
        .expected("a variable from `variables:`, the environment, or a default: `${NAME:-value}`");
    let help = match nearest(name, scope.vars.keys().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => {
            format!("set it under `variables:`, export {name}=…, or write `${{{name}:-default}}`")
        }
    };
    Err(d.help(help))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_test(text: &str) -> Result<String, (usize, usize, Diagnostic)> {
        let vars = BTreeMap::from([("PORT".to_string(), "8080".to_string())]);
        let env = |name: &str| (name == "HOME_DIR").then(|| "/home/x".to_string());
        let secret = |name: &str| {
            if name == "TOKEN" { Ok("s3cret".to_string()) } else { Err("not set".to_string()) }
        };
        expand(text, &Scope { vars: &vars, env: &env, secret: &secret })
    }

    #[test]
    fn expands_variables_environment_defaults_and_secrets() {
        assert_eq!(scope_test("http://127.0.0.1:${PORT}/").unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(scope_test("${HOME_DIR}/x").unwrap(), "/home/x/x");
        assert_eq!(scope_test("${MISSING:-fallback}").unwrap(), "fallback");
        assert_eq!(scope_test("Bearer ${secret:TOKEN}").unwrap(), "Bearer s3cret");
        assert_eq!(scope_test("cost $5 and $${literal}").unwrap(), "cost $5 and ${literal}");
    }

    #[test]
    fn unset_variable_is_located_and_suggested() {
        let (at, width, d) = scope_test("port ${POTR}").unwrap_err();
        assert_eq!((at, width), (5, 7));
        assert_eq!(d.help.as_deref(), Some("did you mean `PORT`?"));
    }

    #[test]
    fn unclosed_reference_is_an_error() {
        assert!(scope_test("${PORT").unwrap_err().2.message.contains("unclosed"));
    }
}
