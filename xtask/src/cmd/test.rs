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
    let helm_dir = set_up(&root)?;
    let path = std::env::join_paths(
        std::iter::once(helm_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--workspace"])
        .args(&args.cargo_args)
        .current_dir(&root)
        .env("PATH", path)
        .status()?;
    Ok(ExitCode::from(status.code().map_or(super::EXIT_GATE_FAILED, |c| c as u8)))
}

/// The images the tests start containers from, made by the reference pipeline's own stages, and the
/// helm stand-in. Returns the directory holding `helm`, to put first on PATH.
fn set_up(root: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    eprintln!("set-up: base image and infrastructure images (the pipeline's base-image and infra-images stages)");
    let status = std::process::Command::new(std::env::current_exe()?)
        // A deploy of this checkout may be building the same images: wait for it rather than fail.
        .args(["deploy", "--only", "base-image,infra-images", "--wait-lock", "30m"])
        .current_dir(root)
        .status()?;
    anyhow::ensure!(status.success(), "building the test images failed (see the run's report above)");
    // Drill tests put the service's debug binary into an image; `cargo test` itself does not build it.
    eprintln!("set-up: the service's debug binary");
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--package", "control-plane"])
        .current_dir(root)
        .status()?;
    anyhow::ensure!(status.success(), "building control-plane failed");
    eprintln!("set-up: helm stand-in");
    let sh = xshell::Shell::new()?;
    crate::helm::standin::ensure(&sh, root)
}

/// The workspace root: the xtask crate's parent directory.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}
