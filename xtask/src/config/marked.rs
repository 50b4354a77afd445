//! Variables marked secret: `variables: { DB_URL: { value: "…", secret: true } }`. The mapping form is
//! read here, on the tree, and replaced by its plain value, so every later pass sees `NAME: value`; the
//! names marked secret are returned, and their final values are redacted like `${secret:…}` ones.

use std::collections::BTreeSet;

use super::diag::Diagnostic;
use super::tree::{Node, Value};

const KEYS: [&str; 3] = ["value", "secret", "description"];

/// Unmarks the variables under `variables:` and under every environment's `variables:`.
pub fn unmark(root: &mut Node, errors: &mut Vec<Diagnostic>) -> BTreeSet<String> {
    let mut secret = BTreeSet::new();
    if let Some(vars) = root.get_mut("variables") {
        unmark_map(vars, &mut secret, errors);
    }
    if let Some(Value::Map(envs)) = root.get_mut("environments").map(|e| &mut e.value) {
        for (_, env) in envs.iter_mut() {
            if let Some(vars) = env.get_mut("variables") {
                unmark_map(vars, &mut secret, errors);
            }
        }
    }
    secret
}

fn unmark_map(vars: &mut Node, secret: &mut BTreeSet<String>, errors: &mut Vec<Diagnostic>) {
    let Value::Map(entries) = &mut vars.value else { return };
    for (key, value) in entries.iter_mut() {
        if value.as_map().is_none() {
            continue;
        }
        match read(value) {
            Ok((plain, is_secret)) => {
                if is_secret && let Some(name) = key.as_str() {
                    secret.insert(name.to_string());
                }
                *value = plain;
            }
            Err(d) => errors.push(d),
        }
    }
}

/// The `value` node and whether `secret: true` was given.
fn read(node: &Node) -> Result<(Node, bool), Diagnostic> {
    let entries = node.as_map().unwrap_or_default();
    for (key, _) in entries {
        let name = key.as_str().unwrap_or_default();
        if !KEYS.contains(&name) {
            return Err(Diagnostic::new(format!("unknown key `{name}` in a variable"))
                .at(key.span)
                .expected("`value`, `secret` or `description`")
                .suggest(name, KEYS));
        }
    }
    let value = node.get("value").ok_or_else(|| {
        Diagnostic::new("a variable written as a mapping needs `value`")
            .at(node.span)
            .expected("`{ value: \"…\", secret: true }`, or the value alone")
    })?;
    if !matches!(value.value, Value::Scalar { .. }) {
        return Err(Diagnostic::new("a variable's `value` must be text")
            .at(value.span)
            .expected("a string, number or boolean")
            .found(value.describe()));
    }
    let is_secret = match node.get("secret") {
        None => false,
        Some(flag) => match flag.as_str() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                return Err(Diagnostic::new("`secret` must be true or false")
                    .at(flag.span)
                    .expected("`true` or `false`")
                    .found(flag.describe()));
            }
        },
    };
    Ok((value.clone(), is_secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_form_becomes_its_value_and_names_secrets() {
        let mut root = super::super::tree::parse(
            "variables:\n  A: plain\n  B: { value: hidden, secret: true }\n  C: { value: 3 }\nenvironments:\n  ci:\n    variables: { D: { value: x, secret: true } }\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        let secret = unmark(&mut root, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(secret.into_iter().collect::<Vec<_>>(), ["B", "D"]);
        let vars = root.get("variables").unwrap();
        assert_eq!(vars.get("B").unwrap().as_str(), Some("hidden"));
        assert_eq!(vars.get("C").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn mistakes_are_located() {
        let mut root = super::super::tree::parse(
            "variables:\n  B: { valeu: hidden, secret: true }\n  C: { value: x, secret: maybe }\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        unmark(&mut root, &mut errors);
        assert_eq!(errors.len(), 2);
    }
}
