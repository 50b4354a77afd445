//! `secrets_scan`: compose files and Helm values hold no plaintext credentials. A password-like key must take
//! its value from elsewhere (`${VAR}`, a template expression, a Secret reference), never a literal.

use std::path::{Path, PathBuf};

use globset::Glob;

use super::Check;
use crate::config::tree::{self, Node, Value};

/// Words that, ending a key's name, say it holds a credential.
const SECRET_WORDS: &[&str] = &["password", "passwd", "pwd", "passphrase", "secret", "token", "credentials"];
/// Pairs of words that do too (`api_key`, `privateKey`).
const SECRET_PAIRS: &[[&str; 2]] = &[["api", "key"], ["private", "key"], ["access", "key"], ["secret", "key"]];

/// One plaintext credential: where it is and under which key (never its value).
#[derive(Debug, PartialEq)]
struct Finding {
    file: String,
    line: usize,
    key: String,
}

pub fn check(gate: &crate::config::SecretsScanGate, base_dir: &Path, allow_empty: bool) -> Check {
    let expected = format!("no plaintext credentials in {}", gate.files.join(", "));
    let files = match expand(&gate.files, base_dir) {
        Ok(files) => files,
        Err(e) => return Check::new(false, expected, e),
    };
    if files.is_empty() && !allow_empty {
        return Check::new(false, expected, "no file matched: nothing was scanned");
    }
    let mut findings = Vec::new();
    for path in &files {
        let shown = path.strip_prefix(base_dir).unwrap_or(path).display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return Check::new(false, expected, format!("cannot read {shown}: {e}")),
        };
        let root = match tree::parse(&text) {
            Ok(root) => root,
            Err(d) => return Check::new(false, expected, format!("{shown} is not YAML: {}", d.message)),
        };
        scan(&root, &shown, &gate.ignore_keys, &mut findings);
    }
    if findings.is_empty() {
        return Check::new(true, expected, format!("{} files scanned, no plaintext credential", files.len()));
    }
    let listed: Vec<String> =
        findings.iter().map(|f| format!("{}:{}: `{}` holds a literal value", f.file, f.line, f.key)).collect();
    Check::new(false, expected, listed.join("; "))
}

/// Every file each entry names: a path, or a glob walked from its literal leading directories.
fn expand(patterns: &[String], base_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for pattern in patterns {
        if !pattern.contains(['*', '?', '[', '{']) {
            let path = base_dir.join(pattern);
            if !path.is_file() {
                return Err(format!("{pattern} does not exist"));
            }
            files.push(path);
            continue;
        }
        let matcher = Glob::new(pattern).map_err(|e| format!("invalid glob `{pattern}`: {e}"))?.compile_matcher();
        let literal: PathBuf = Path::new(pattern)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[', '{']))
            .collect();
        let mut found = Vec::new();
        walk(&base_dir.join(&literal), &mut found);
        let absolute = Path::new(pattern).is_absolute();
        found.retain(|f| {
            if absolute { matcher.is_match(f) } else { f.strip_prefix(base_dir).is_ok_and(|rel| matcher.is_match(rel)) }
        });
        found.sort();
        files.extend(found);
    }
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn scan(node: &Node, file: &str, ignore: &[String], findings: &mut Vec<Finding>) {
    match &node.value {
        Value::Map(entries) => {
            for (key, value) in entries {
                let name = key.as_str().unwrap_or_default();
                if let Some(text) = value.as_str()
                    && is_secret_key(name, ignore)
                    && is_literal(text)
                {
                    findings.push(Finding { file: file.into(), line: value.span.line, key: name.into() });
                }
                if let Some(text) = value.as_str()
                    && has_url_password(text)
                {
                    findings.push(Finding {
                        file: file.into(),
                        line: value.span.line,
                        key: format!("{name} (URL password)"),
                    });
                }
                scan(value, file, ignore, findings);
            }
            kubernetes_env(node, file, ignore, findings);
        }
        Value::Seq(items) => {
            for item in items {
                // Compose's list form: `- POSTGRES_PASSWORD=literal`.
                if let Some((name, text)) = item.as_str().and_then(|t| t.split_once('='))
                    && is_secret_key(name, ignore)
                    && is_literal(text)
                {
                    findings.push(Finding { file: file.into(), line: item.span.line, key: name.into() });
                }
                scan(item, file, ignore, findings);
            }
        }
        _ => {}
    }
}

/// Kubernetes' list form: `{name: DB_PASSWORD, value: literal}` (a `valueFrom` is the right way).
fn kubernetes_env(node: &Node, file: &str, ignore: &[String], findings: &mut Vec<Finding>) {
    if let (Some(name), Some(value)) = (node.get("name").and_then(Node::as_str), node.get("value"))
        && let Some(text) = value.as_str()
        && is_secret_key(name, ignore)
        && is_literal(text)
    {
        findings.push(Finding { file: file.into(), line: value.span.line, key: name.into() });
    }
}

/// Whether a key names a credential: its last word, or last two, say so. `existingSecret` (Helm's convention
/// for naming a Secret the operator created) and `…Key`/`…Ref` names of Secret keys are references, not values.
fn is_secret_key(name: &str, ignore: &[String]) -> bool {
    if ignore.iter().any(|i| i.eq_ignore_ascii_case(name)) {
        return false;
    }
    let words = words(name);
    let Some(last) = words.last() else { return false };
    if words.first().is_some_and(|w| w == "existing") || matches!(last.as_str(), "ref" | "name" | "file" | "path") {
        return false;
    }
    let pair = words.len() >= 2 && SECRET_PAIRS.iter().any(|[a, b]| words[words.len() - 2] == *a && last == b);
    let word_key = last == "key" && words.len() >= 2 && SECRET_WORDS.contains(&words[words.len() - 2].as_str());
    (SECRET_WORDS.contains(&last.as_str()) || pair) && !word_key
}

/// `camelCase`, `snake_case`, `kebab-case` and `SHOUTING_CASE` split into lowercase words.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

/// A value typed into the file, as opposed to a reference resolved at deploy time.
fn is_literal(text: &str) -> bool {
    let t = text.trim();
    !(t.is_empty()
        || t.starts_with('$')
        || t.contains("{{")
        || ["true", "false", "null", "~", "changeme", "required"].contains(&t.to_ascii_lowercase().as_str()))
}

/// `scheme://user:password@host` with a literal password.
fn has_url_password(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else { return false };
    let Some((credentials, _)) = rest.split_once('@') else { return false };
    match credentials.split_once(':') {
        Some((_, password)) => is_literal(password) && !password.contains('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_keys_by_their_last_words() {
        for key in
            ["password", "POSTGRES_PASSWORD", "redisPassword", "api_key", "apiToken", "client-secret", "privateKey"]
        {
            assert!(is_secret_key(key, &[]), "{key}");
        }
        for key in
            ["existingSecret", "apiTokenKey", "passwordFile", "secretKeyRef", "tokenPath", "keys", "monkey", "user"]
        {
            assert!(!is_secret_key(key, &[]), "{key}");
        }
        assert!(!is_secret_key("password", &["PASSWORD".into()]));
    }

    #[test]
    fn references_are_not_literals() {
        for value in ["${POSTGRES_PASSWORD}", "${X:?must be set}", "{{ .Values.x }}", "", "true"] {
            assert!(!is_literal(value), "{value}");
        }
        assert!(is_literal("hunter2"));
        assert!(has_url_password("postgres://app:hunter2@db/app"));
        assert!(!has_url_password("postgres://app:${PW}@db/app"));
        assert!(!has_url_password("redis://redis:6379"));
    }

    #[test]
    fn finds_literals_in_every_form_with_their_line() {
        let yaml = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: hunter2\n      OK: ${X}\n  \
                    app:\n    environment:\n      - API_TOKEN=abc\n      - DATABASE_URL=postgres://u:${P}@db/x\nenv:\n  \
                    - name: DB_PASSWORD\n    value: s3cret\n  - name: REDIS_PASSWORD\n    valueFrom: {secretKeyRef: {name: a, key: b}}\n\
                    url: redis://:pw@redis:6379\nexistingSecret: creds\n";
        let root = tree::parse(yaml).unwrap();
        let mut found = Vec::new();
        scan(&root, "f.yaml", &[], &mut found);
        let seen: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.key.as_str())).collect();
        assert_eq!(
            seen,
            vec![(4, "POSTGRES_PASSWORD"), (8, "API_TOKEN"), (12, "DB_PASSWORD"), (15, "url (URL password)")]
        );
    }
}
