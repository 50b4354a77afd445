//! `cargo xtask schema`: regenerate pipeline.schema.json from the model types.

use std::process::ExitCode;

pub const FILE: &str = "pipeline.schema.json";

pub fn text() -> String {
    let mut text = serde_json::to_string_pretty(&crate::config::schema::generate()).expect("schemas serialize");
    text.push('\n');
    text
}

pub fn run(out: Option<&std::path::Path>) -> ExitCode {
    let path = out.map(std::path::Path::to_path_buf).unwrap_or_else(|| FILE.into());
    match std::fs::write(&path, text()) {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::from(super::EXIT_INVALID)
        }
    }
}
