//! Hides passwords inside connection URLs before they reach a log line or an API response.

/// `redis://:secret@host:6379` → `redis://:***@host:6379`; URLs without a password are unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let authority_end = url[rest_start..].find(['/', '?', '#']).map_or(url.len(), |n| rest_start + n);
    let authority = &url[rest_start..authority_end];
    // The last `@` ends the userinfo: a password may itself contain `@`.
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!("{}{}:***{}", &url[..rest_start], &userinfo[..colon], &url[rest_start + at..])
}

/// Redacts each URL of a comma-separated list.
pub fn redact_list(urls: &str) -> String {
    urls.split(',').map(redact_url).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_keeps_the_rest() {
        assert_eq!(redact_url("redis://:s3cret@redis:6379"), "redis://:***@redis:6379");
        assert_eq!(
            redact_url("postgres://app:p@ss@db:5432/app?sslmode=disable"),
            "postgres://app:***@db:5432/app?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact_url("http://etcd:2379"), "http://etcd:2379");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_list("http://a:b@x:1,http://y:2"), "http://a:***@x:1,http://y:2");
    }

    #[test]
    fn password_never_survives() {
        for url in ["redis://user:hunter2@h", "postgresql://u:hunter2@h:1/d", "redis://:hunter2@h/0#frag"] {
            assert!(!redact_url(url).contains("hunter2"), "{url}");
        }
    }
}
