//! Embeds every `migrations/NNNN_name.sql` file into the binary, so `control-plane migrate` needs no files on disk.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-env-changed=GIT_SHA");

    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("examples/control-plane/migrations must exist")
        .map(|entry| entry.expect("readable migrations dir").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();

    let mut out = String::from(
        "/// (file name, file contents) of every embedded migration, sorted by file name.\npub static EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().expect("file has a name").to_string_lossy();
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    out.push_str("];\n");
    let target = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_migrations.rs");
    fs::write(target, out).expect("OUT_DIR is writable");
}
