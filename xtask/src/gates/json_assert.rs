//! JSONPath assertions on a JSON document, shared by the `http` and `websocket` gates.

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::config::JsonAssertion;

/// Longest excerpt of a body or of selected values shown in `actual`.
pub const SHOWN: usize = 300;

/// One assertion that did not hold: what it asked and what was there.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    pub expected: String,
    pub actual: String,
}

/// The assertion in words, e.g. `$.status equals "ok"`.
pub fn describe(a: &JsonAssertion) -> String {
    let path = &a.path.0;
    let check = if let Some(v) = &a.equals {
        format!("equals {v}")
    } else if let Some(v) = &a.all {
        format!("all equal {v}")
    } else if let Some(v) = &a.any {
        format!("any equals {v}")
    } else if let Some(n) = a.count {
        format!("count = {n}")
    } else if let Some(n) = a.min_count {
        format!("count ≥ {n}")
    } else if a.exists == Some(false) {
        "does not exist".into()
    } else {
        "exists".into()
    };
    format!("{path} {check}")
}

/// Every assertion that does not hold on `doc`.
pub fn misses(assertions: &[JsonAssertion], doc: &Value, allow_empty: bool) -> Vec<Miss> {
    assertions
        .iter()
        .filter_map(|a| judge(a, doc, allow_empty).err().map(|actual| Miss { expected: describe(a), actual }))
        .collect()
}

/// `Ok` when the assertion holds; otherwise what the path actually selected.
pub fn judge(a: &JsonAssertion, doc: &Value, allow_empty: bool) -> Result<(), String> {
    let path = JsonPath::parse(&a.path.0).map_err(|e| format!("invalid JSONPath: {e}"))?;
    let found: Vec<&Value> = path.query(doc).all();
    let asks_absence = a.exists == Some(false) || a.count == Some(0);
    if found.is_empty() && !asks_absence {
        // An empty result proves nothing: a gate must not pass on missing data by accident.
        return if allow_empty { Ok(()) } else { Err(format!("{} matched nothing", a.path.0)) };
    }
    let shown = || excerpt(&serde_json::to_string(&found).unwrap_or_default());
    if let Some(want) = &a.equals {
        return match found.as_slice() {
            [one] if same(one, want) => Ok(()),
            [one] => Err(format!("{} = {}", a.path.0, excerpt(&one.to_string()))),
            many => Err(format!("{} selected {} values, not one: {}", a.path.0, many.len(), shown())),
        };
    }
    if let Some(want) = &a.all {
        let differ: Vec<&&Value> = found.iter().filter(|v| !same(v, want)).collect();
        return match differ.len() {
            0 => Ok(()),
            n => {
                let values = excerpt(&serde_json::to_string(&differ).unwrap_or_default());
                Err(format!("{n} of {} differ: {values}", found.len()))
            }
        };
    }
    if let Some(want) = &a.any {
        return match found.iter().any(|v| same(v, want)) {
            true => Ok(()),
            false => Err(format!("none of {} equal: {}", found.len(), shown())),
        };
    }
    let size = size(&found);
    if let Some(n) = a.count {
        return if size == n { Ok(()) } else { Err(format!("count = {size}")) };
    }
    if let Some(n) = a.min_count {
        return if size >= n { Ok(()) } else { Err(format!("count = {size}")) };
    }
    match (a.exists, found.is_empty()) {
        (Some(false), false) => Err(format!("{} exists: {}", a.path.0, shown())),
        _ => Ok(()),
    }
}

/// Numbers compare by value, so `3` in YAML equals `3.0` in JSON.
fn same(actual: &Value, want: &Value) -> bool {
    match (actual.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => actual == want,
    }
}

/// How many values were selected; a single selected array counts its elements (`$` of a list).
fn size(found: &[&Value]) -> usize {
    match found {
        [Value::Array(items)] => items.len(),
        _ => found.len(),
    }
}

/// `text` cut to [`SHOWN`] characters, marking the cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JsonPathText;
    use serde_json::json;

    fn assertion(path: &str) -> JsonAssertion {
        JsonAssertion {
            path: JsonPathText(path.into()),
            equals: None,
            all: None,
            any: None,
            count: None,
            min_count: None,
            exists: None,
        }
    }

    fn health() -> Value {
        json!({
            "status": "ok",
            "version": 3,
            "checks": { "db": { "status": "up" }, "cache": { "status": "down" } },
            "jobs": [{ "name": "build" }, { "name": "review" }, { "name": "deploy" }],
            "empty": []
        })
    }

    #[test]
    fn equals_compares_one_value_and_numbers_by_value() {
        let a = JsonAssertion { equals: Some(json!("ok")), ..assertion("$.status") };
        assert_eq!(judge(&a, &health(), false), Ok(()));
        let a = JsonAssertion { equals: Some(json!(3.0)), ..assertion("$.version") };
        assert_eq!(judge(&a, &health(), false), Ok(()));
        let a = JsonAssertion { equals: Some(json!("degraded")), ..assertion("$.status") };
        assert_eq!(judge(&a, &health(), false), Err("$.status = \"ok\"".into()));
        let a = JsonAssertion { equals: Some(json!("up")), ..assertion("$.checks.*.status") };
        assert!(judge(&a, &health(), false).unwrap_err().contains("selected 2 values, not one"));
    }

    #[test]
    fn all_and_any() {
        let all = JsonAssertion { all: Some(json!("up")), ..assertion("$.checks.*.status") };
        assert_eq!(judge(&all, &health(), false), Err("1 of 2 differ: [\"down\"]".into()));
        let any = JsonAssertion { any: Some(json!("review")), ..assertion("$.jobs[*].name") };
        assert_eq!(judge(&any, &health(), false), Ok(()));
        let none = JsonAssertion { any: Some(json!("ship")), ..assertion("$.jobs[*].name") };
        assert!(judge(&none, &health(), false).unwrap_err().starts_with("none of 3 equal"));
    }

    #[test]
    fn count_counts_matches_or_the_elements_of_one_array() {
        let whole = JsonAssertion { count: Some(3), ..assertion("$.jobs") };
        assert_eq!(judge(&whole, &health(), false), Ok(()));
        let each = JsonAssertion { count: Some(3), ..assertion("$.jobs[*]") };
        assert_eq!(judge(&each, &health(), false), Ok(()));
        let root = JsonAssertion { count: Some(3), ..assertion("$") };
        assert_eq!(judge(&root, &json!([1, 2, 3]), false), Ok(()));
        let min = JsonAssertion { min_count: Some(4), ..assertion("$.jobs") };
        assert_eq!(judge(&min, &health(), false), Err("count = 3".into()));
        let zero = JsonAssertion { count: Some(0), ..assertion("$.empty") };
        assert_eq!(judge(&zero, &health(), false), Ok(()));
    }

    #[test]
    fn a_path_that_matches_nothing_fails_unless_empty_is_allowed() {
        let a = JsonAssertion { all: Some(json!("up")), ..assertion("$.services.*.status") };
        assert_eq!(judge(&a, &health(), false), Err("$.services.*.status matched nothing".into()));
        assert_eq!(judge(&a, &health(), true), Ok(()));
        let absent = JsonAssertion { exists: Some(false), ..assertion("$.error") };
        assert_eq!(judge(&absent, &health(), false), Ok(()));
        let present = JsonAssertion { exists: Some(false), ..assertion("$.status") };
        assert!(judge(&present, &health(), false).is_err());
        let exists = JsonAssertion { exists: Some(true), ..assertion("$.id") };
        assert!(judge(&exists, &health(), false).is_err());
    }

    #[test]
    fn misses_name_the_assertion_and_excerpts_are_cut() {
        let a = JsonAssertion { equals: Some(json!("ok")), ..assertion("$.state") };
        let m = misses(&[a], &health(), false);
        assert_eq!(
            m,
            vec![Miss { expected: "$.state equals \"ok\"".into(), actual: "$.state matched nothing".into() }]
        );
        let long = "é".repeat(400);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), SHOWN + 1);
        assert!(cut.ends_with('…'));
    }
}
