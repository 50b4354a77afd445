//! `cargo xtask report [RUN]`: re-render the reports of a stored run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_PASSED, runs_dir};
use crate::run::record;

pub fn run(which: Option<&str>, templates: Option<&Path>) -> ExitCode {
    let dir = match locate(which) {
        Some(dir) => dir,
        None => {
            eprintln!(
                "error: no stored run `{}` under {}",
                which.unwrap_or("latest"),
                runs_dir(Path::new(".")).display()
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let result = record::read(&dir.join("run.json")).and_then(|r| crate::report::render_all(&r, &dir, templates));
    match result {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::from(EXIT_PASSED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// A run directory from an id, a path, or `latest`.
fn locate(which: Option<&str>) -> Option<PathBuf> {
    let which = which.unwrap_or("latest");
    let as_path = PathBuf::from(which);
    if as_path.join("run.json").is_file() {
        return Some(as_path);
    }
    let here = std::env::current_dir().ok()?;
    here.ancestors().map(|d| runs_dir(d).join(which)).find(|d| d.join("run.json").is_file())
}
