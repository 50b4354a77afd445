//! Installs the helm stand-in (tools/helm/helm over the PyPI package helm-python-sdk) into `.venv/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Makes `.venv/` at the repo root hold the stand-in's requirements and returns a directory
/// with an executable `helm` in it, to put first on PATH. Quick when already done.
pub fn ensure(sh: &Shell, repo_root: &Path) -> anyhow::Result<PathBuf> {
    let script = repo_root.join("tools/helm/helm");
    let requirements_file = repo_root.join("tools/helm/requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_file)
        .with_context(|| format!("reading {}", requirements_file.display()))?;
    if !script.is_file() {
        bail!("the helm stand-in script {} is missing", script.display());
    }
    let venv = repo_root.join(".venv");
    let python = venv.join("bin/python");
    // Tests (parallel threads) and pipeline runs (other processes) may install at once;
    // flock serialises both, and is released when the file is closed.
    std::fs::create_dir_all(&venv).with_context(|| format!("creating {}", venv.display()))?;
    let lock_path = venv.join(".helm-standin.lock");
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    // The marker records which requirements were installed, so a changed pin reinstalls.
    let marker = venv.join(".helm-standin-requirements");
    if !python.exists() {
        run(cmd!(sh, "python3 -m venv {venv}"), "creating the venv")?;
    }
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(requirements.as_str()) {
        run(
            cmd!(sh, "{python} -m pip install --quiet --disable-pip-version-check -r {requirements_file}"),
            "installing tools/helm/requirements.txt",
        )?;
        std::fs::write(&marker, &requirements).with_context(|| format!("writing {}", marker.display()))?;
    }
    let bin = venv.join("helm-standin");
    write_launcher(&bin, &python, &script)?;
    Ok(bin)
}

fn write_launcher(bin: &Path, python: &Path, script: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (python, script) = (python.display().to_string(), script.display().to_string());
    if python.contains('\'') || script.contains('\'') {
        bail!("cannot write a launcher for paths containing a single quote: {script}");
    }
    let launcher = format!("#!/bin/sh\nexec '{python}' '{script}' \"$@\"\n");
    let path = bin.join("helm");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(launcher.as_str()) {
        std::fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
        std::fs::write(&path, launcher).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))?;
    Ok(())
}

fn run(command: xshell::Cmd<'_>, what: &str) -> anyhow::Result<()> {
    let shown = command.to_string();
    let output =
        command.quiet().ignore_status().output().with_context(|| format!("{what}: could not run `{shown}`"))?;
    if !output.status.success() {
        bail!("{what}: `{shown}` failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
