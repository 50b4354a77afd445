//! `cargo xtask test`: set up everything the tests need on a fresh machine, then `cargo test --workspace`.

use std::process::ExitCode;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TestArgs {
    /// Arguments passed on to `cargo test` (after `--`).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

pub fn run(args: &TestArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: test set-up failed: {e:#}");
            ExitCode::from(super::EXIT_INVALID)
        }
    }
}

fn run_inner(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let cargo_args = &args.cargo_args;
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--workspace"])
        .args(cargo_args)
        .current_dir(&root)
        .status()?;
    Ok(ExitCode::from(status.code().map_or(super::EXIT_GATE_FAILED, |c| c as u8)))
}

/// The workspace root: the xtask crate's parent directory.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}
