//! The loader under generated input, within `cargo test`'s time: YAML that is well formed but wrong
//! (pipeline keys and values in the wrong places), and byte-level mutations of the reference
//! pipeline.yaml. Every input must give a pipeline or diagnostics that point into the file; none may panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_yaml::Value as Yaml;

use super::{Diagnostics, LoadOptions, Source, load};

const REFERENCE: &str = include_str!("../../../pipeline.yaml");

const KEYS: &[&str] = &[
    "version",
    "name",
    "stages",
    "kind",
    "gates",
    "needs",
    "timeout",
    "when",
    "program",
    "args",
    "variables",
    "environments",
    "secrets",
    "checklist",
    "signoffs",
    "reports",
    "url",
    "expect",
    "status",
    "json",
    "path",
    "equals",
    "images",
    "file",
    "project",
    "action",
    "services",
    "scenario",
    "thresholds",
    "check",
    "generate",
    "value",
    "secret",
    "id",
    "section",
    "item",
    "address",
    "query",
    "rows",
    "min_rows",
    "environments",
    "local",
    "allow_empty",
    "chart",
    "wait",
    "connections",
    "duration",
    "rate",
    "nonsense",
    "",
    "<<",
];

const SCALARS: &[&str] = &[
    "1",
    "2",
    "0",
    "-1",
    "1.5",
    "true",
    "false",
    "null",
    "~",
    "command",
    "verify",
    "build",
    "compose",
    "helm",
    "bench",
    "base_image",
    "tcp",
    "http",
    "sql",
    "output",
    "exit_code",
    "always",
    "on_failure",
    "10s",
    "5",
    "1h 30m",
    "-3s",
    "10x",
    "${X}",
    "${secret:S}",
    "${UNSET}",
    "${X:-d}",
    "$${lit}",
    "${",
    "${secret:}",
    "p95 < 100ms",
    "error_rate < 0.1%",
    "127.0.0.1:1",
    "http://[::1",
    "$.a[",
    "a",
    "stage-1",
    "é",
    "\u{0}",
    "\t",
    "'",
    "\"",
];

fn scalar() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        6 => proptest::sample::select(SCALARS).prop_map(|s| Yaml::String(s.to_string())),
        2 => any::<i64>().prop_map(|n| Yaml::Number(n.into())),
        1 => any::<bool>().prop_map(Yaml::Bool),
        1 => Just(Yaml::Null),
        1 => "[ -~]{0,12}".prop_map(Yaml::String),
    ]
}

/// Nested mappings and lists made of pipeline words: plausible shapes, wrong contents.
fn structured() -> impl Strategy<Value = Yaml> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Yaml::Sequence),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(|entries| {
                Yaml::Mapping(entries.into_iter().map(|(k, v)| (Yaml::String(k.to_string()), v)).collect())
            }),
        ]
    })
}

/// A whole document: usually `version: 1` and `stages:` with generated stages, sometimes anything.
fn document() -> impl Strategy<Value = String> {
    let stages = proptest::collection::vec(structured(), 0..4);
    let header = proptest::collection::vec((proptest::sample::select(KEYS), structured()), 0..4);
    (proptest::bool::weighted(0.8), stages, header, structured()).prop_map(|(pipeline_like, stages, header, any)| {
        let doc = if pipeline_like {
            let mut map = serde_yaml::Mapping::new();
            map.insert("version".into(), 1.into());
            for (k, v) in header {
                map.insert(k.into(), v);
            }
            map.insert("stages".into(), Yaml::Sequence(stages));
            Yaml::Mapping(map)
        } else {
            any
        };
        serde_yaml::to_string(&doc).unwrap_or_default()
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Replace { at: usize, byte: u8 },
    DuplicateLine { at: usize },
    Truncate { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    let yaml_bytes = proptest::sample::select(b":-[]{}&*!|>'\"%@`#, \t\n?$\\0".to_vec());
    prop_oneof![
        3 => (at, 1..40usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        3 => (at, proptest::collection::vec(yaml_bytes.clone(), 1..4)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        3 => (at, prop_oneof![yaml_bytes, any::<u8>()]).prop_map(|(at, byte)| Edit::Replace { at, byte }),
        1 => at.prop_map(|at| Edit::DuplicateLine { at }),
        1 => at.prop_map(|at| Edit::Truncate { at }),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let at = |i: usize| if bytes.is_empty() { 0 } else { i % bytes.len() };
        match edit {
            Edit::Delete { at: i, len } => {
                let start = at(*i);
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert { at: i, bytes: new } => {
                let start = at(*i);
                bytes.splice(start..start, new.iter().copied());
            }
            Edit::Replace { at: i, byte } if !bytes.is_empty() => {
                let i = at(*i);
                bytes[i] = *byte;
            }
            Edit::Replace { .. } => {}
            Edit::DuplicateLine { at: i } => {
                let i = at(*i);
                let start = bytes[..i].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                let end = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p + 1);
                let line = bytes[start..end].to_vec();
                bytes.splice(start..start, line);
            }
            Edit::Truncate { at: i } => bytes.truncate(at(*i)),
        }
    }
    // The file reader refuses bytes that are not UTF-8 (tested elsewhere); the loader gets text.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads `text` and checks the outcome: a pipeline, or diagnostics each pointing into the file.
fn assert_loads_or_locates(text: &str) -> Result<(), TestCaseError> {
    // What `cmd` provides on a real run, so mutations of the reference reach past variable resolution.
    let builtins: BTreeMap<String, String> =
        ["X", "RUN_ID", "GIT_SHA", "GIT_DESCRIBE", "IMAGE_TAG", "REPO_ROOT", "ENVIRONMENT"]
            .into_iter()
            .map(|k| (k.to_string(), "x".to_string()))
            .collect();
    let overrides = BTreeMap::new();
    let options = LoadOptions {
        env: None,
        overrides: &overrides,
        builtins: &builtins,
        lookup_env: &|_| None,
        secret: &|_, _| Ok("s3cret".into()),
    };
    let source = Source::new("pipeline.yaml", text);
    match load(&source, &options) {
        Ok(_) => Ok(()),
        Err(Diagnostics { items, .. }) => {
            prop_assert!(!items.is_empty(), "an error without a diagnostic");
            let lines = text.lines().count().max(1);
            for d in &items {
                // An empty document has nowhere to point; everything else must say where.
                let blank = text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
                match d.span {
                    Some(span) => prop_assert!(span.line >= 1 && span.line <= lines + 1, "{d:?} beyond the text"),
                    None => prop_assert!(blank || unlocated_by_nature(d), "unlocated: {d:?}\n{text}"),
                }
                let rendered = d.render(&source);
                prop_assert!(!rendered.is_empty());
            }
            Ok(())
        }
    }
}

/// Problems about the file as a whole, with nothing in it to point at.
fn unlocated_by_nature(d: &super::Diagnostic) -> bool {
    d.message.starts_with("a pipeline file must be a mapping")
}

/// `cases` per `cargo test` (a few seconds in debug); `PROPTEST_CASES=N` runs a longer campaign.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn the_reference_pipeline_loads() {
    assert_loads_or_locates(REFERENCE).unwrap();
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn structured_but_wrong_yaml_loads_or_is_located(text in document()) {
        assert_loads_or_locates(&text)?;
    }

    #[test]
    fn mutated_reference_pipeline_loads_or_is_located(edits in proptest::collection::vec(edit(), 1..6)) {
        assert_loads_or_locates(&mutate(REFERENCE, &edits))?;
    }
}
