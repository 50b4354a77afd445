//! Repository checks that `cargo test` runs like any other test: generated files are fresh,
//! every source file says what it is for.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

#[test]
fn pipeline_schema_is_fresh() {
    let path = root().join("pipeline.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["schema", "--out"])
        .arg(tmp.path().join("schema.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let fresh = std::fs::read_to_string(tmp.path().join("schema.json")).unwrap();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if fresh != committed {
        std::fs::write(&path, &fresh).unwrap();
        panic!("pipeline.schema.json was stale and has been regenerated: commit it");
    }
}

#[test]
fn pipeline_yaml_points_editors_at_the_schema() {
    let text = std::fs::read_to_string(root().join("pipeline.yaml")).unwrap();
    assert!(text.starts_with("# yaml-language-server: $schema=./pipeline.schema.json\n"));
}

#[test]
fn the_reference_pipeline_is_valid() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask")).arg("validate").current_dir(root()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let mut missing = Vec::new();
    for dir in ["xtask/src", "xtask/tests", "benches", "examples"] {
        for file in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(file.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "these files do not open with a `//!` line saying what they are for: {missing:?}");
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
