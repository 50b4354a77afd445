//! Secret values registered at load time and scrubbed from every line the tool prints or writes.

use std::borrow::Cow;
use std::sync::RwLock;

const MASK: &str = "***";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `value` as secret from now on. Very short values would mask ordinary text; they are
/// still masked when they stand alone.
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for form in escaped_forms(value) {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// The value as written into run.json (JSON string escapes) and into report.html and junit.xml
/// (minijinja's HTML escaping), besides the value itself: redaction runs on the written text.
fn escaped_forms(value: &str) -> Vec<String> {
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json.get(1..json.len().saturating_sub(1)).unwrap_or(value).to_string();
    let html = minijinja::HtmlEscape(value).to_string();
    let mut forms = vec![value.to_string(), json, html];
    forms.dedup();
    forms
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        let masks = if secret.len() >= 4 { out.contains(secret.as_str()) } else { out == secret.as_str() };
        if masks {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// `url` with the password of its `user:password@` part replaced by `***`, for URLs written in the file.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    let Some((user, _password)) = rest[..at].split_once(':') else { return url.to_string() };
    format!("{scheme}://{user}:{MASK}{}", &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords() {
        assert_eq!(mask_url_password("postgres://u:p%40ss@db:5432/x?a=b"), "postgres://u:***@db:5432/x?a=b");
        assert_eq!(mask_url_password("redis://:secret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(mask_url_password("http://host:9090/a@b"), "http://host:9090/a@b");
        assert_eq!(mask_url_password("postgres://u@db/x"), "postgres://u@db/x");
    }

    #[test]
    fn masks_escaped_forms_too() {
        register("q\"uo<te>&/x");
        assert_eq!(redact(r#"{"v":"q\"uo<te>&/x"}"#), r#"{"v":"***"}"#);
        assert_eq!(redact("<td>q&quot;uo&lt;te&gt;&amp;&#x2f;x</td>"), "<td>***</td>");
    }

    #[test]
    fn masks_registered_values() {
        register("hunter2-password");
        assert_eq!(redact("postgres://u:hunter2-password@db/x"), "postgres://u:***@db/x");
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
