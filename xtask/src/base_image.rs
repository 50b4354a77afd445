//! Creates the Debian base image every stack image builds FROM, with mmdebstrap + `docker import`,
//! because this project's machines have no registry to pull a base image from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;
use xshell::{Shell, cmd};

/// Label on the imported image recording which recipe made it, so a changed spec is rebuilt.
const FINGERPRINT_LABEL: &str = "rehearsal.base.fingerprint";

/// What goes into the base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImageSpec {
    /// Image reference to create, e.g. `rehearsal/debian:bookworm`.
    pub image: String,
    /// Debian suite (codename), e.g. `bookworm`.
    pub suite: String,
    /// Full apt source lines; they also end up in the image's `/etc/apt/sources.list`.
    pub sources: Vec<String>,
    /// Packages added on top of mmdebstrap's `apt` variant (Essential + apt).
    pub packages: Vec<String>,
    /// Where the rootfs tarball is written (`target/xtask/base/` of the workspace).
    pub out_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BaseImageStatus {
    AlreadyPresent,
    Created { seconds: f64 },
}

impl BaseImageSpec {
    /// The project's base: small, because build containers reach Debian's mirror and
    /// each image installs its own packages (see `compose/README.md`).
    pub fn bookworm(workspace_root: &Path) -> Self {
        let mirror = "http://deb.debian.org";
        Self {
            image: "rehearsal/debian:bookworm".into(),
            suite: "bookworm".into(),
            sources: vec![
                format!("deb {mirror}/debian bookworm main"),
                format!("deb {mirror}/debian bookworm-updates main"),
                format!("deb {mirror}/debian-security bookworm-security main"),
            ],
            packages: vec!["ca-certificates".into(), "tini".into()],
            out_dir: workspace_root.join("target/xtask/base"),
        }
    }
}

/// The error of an `ensure` stopped by its cancellation token.
pub const INTERRUPTED: &str = "interrupted";

/// How long a cancelled mmdebstrap or import gets to clean up (unmount, remove its temporary
/// directory) before it is killed.
const GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Makes sure `spec.image` exists and was made from this exact recipe; creates it otherwise.
/// Cancelling stops the running program (and everything it started) and leaves no image behind.
pub fn ensure(sh: &Shell, spec: &BaseImageSpec, cancel: &CancellationToken) -> Result<BaseImageStatus> {
    validate(spec)?;
    require_docker(sh)?;
    let recipe = recipe_args(spec);
    let fingerprint = fingerprint(&recipe);
    if image_fingerprint(sh, &spec.image)?.as_deref() == Some(fingerprint.as_str()) {
        return Ok(BaseImageStatus::AlreadyPresent);
    }
    let started = Instant::now();
    let tarball = spec.out_dir.join(format!("rootfs-{fingerprint}.tar"));
    if !sh.path_exists(&tarball) {
        require_mmdebstrap(sh, cancel)?;
        build_rootfs(sh, spec, &recipe, &tarball, cancel)?;
    }
    import(sh, &spec.image, &fingerprint, &tarball, cancel)?;
    Ok(BaseImageStatus::Created { seconds: started.elapsed().as_secs_f64() })
}

fn validate(spec: &BaseImageSpec) -> Result<()> {
    let is_word = |s: &str| {
        !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.:_".contains(c))
    };
    if !is_word(&spec.suite) {
        bail!("base image suite {:?} is not a Debian codename", spec.suite);
    }
    if let Some(bad) = spec.packages.iter().find(|p| !is_word(p)) {
        bail!("base image package name {bad:?} is not a Debian package name");
    }
    if spec.image.is_empty() || spec.image.starts_with('-') || spec.image.contains(char::is_whitespace) {
        bail!("base image name {:?} is not a Docker image reference", spec.image);
    }
    if spec.sources.is_empty() {
        bail!("base image spec has no apt source lines");
    }
    Ok(())
}

/// mmdebstrap arguments except the output path; they define the image, so they are fingerprinted.
fn recipe_args(spec: &BaseImageSpec) -> Vec<String> {
    let mut packages = spec.packages.clone();
    packages.sort();
    packages.dedup();
    let mut args: Vec<String> = [
        "--variant=apt",
        // Without it bookworm pulls in usrmerge and with it all of perl (+40 MB).
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        // dpkg/apt options persist in the image, so per-image installs stay lean too.
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/lintian/*",
        "--dpkgopt=force-unsafe-io",
        "--aptopt=APT::Install-Recommends \"false\"",
        "--aptopt=Acquire::Languages \"none\"",
    ]
    .map(String::from)
    .into();
    if !packages.is_empty() {
        args.push(format!("--include={}", packages.join(",")));
    }
    args.push(spec.suite.clone());
    args
}

/// FNV-1a: stable across Rust releases, unlike `DefaultHasher`, so labels stay comparable.
fn fingerprint(recipe: &[String]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in recipe.join("\n").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn require_docker(sh: &Shell) -> Result<()> {
    let format = "{{.Server.Version}}";
    let reachable = cmd!(sh, "docker version --format {format}").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if !reachable {
        bail!("the Docker engine is not reachable (is `docker` installed and the daemon running?)");
    }
    Ok(())
}

/// The recipe fingerprint of an existing image, `None` when there is no such image.
fn image_fingerprint(sh: &Shell, image: &str) -> Result<Option<String>> {
    let format = format!("{{{{ index .Config.Labels \"{FINGERPRINT_LABEL}\" }}}}");
    let output = cmd!(sh, "docker image inspect --format {format} {image}")
        .quiet()
        .ignore_status()
        .output()
        .context("running `docker image inspect`")?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).trim().to_string()))
}

fn require_mmdebstrap(sh: &Shell, cancel: &CancellationToken) -> Result<()> {
    let present = || cmd!(sh, "mmdebstrap --version").quiet().ignore_stdout().run().is_ok();
    if present() {
        return Ok(());
    }
    let is_root = cmd!(sh, "id -u").quiet().read().is_ok_and(|uid| uid == "0");
    let has_apt = cmd!(sh, "apt-get --version").quiet().ignore_stdout().run().is_ok();
    if !(is_root && has_apt) {
        bail!("mmdebstrap is not installed; install it with `apt-get install mmdebstrap` (as root)");
    }
    // A fresh CI machine: install it ourselves rather than fail.
    run_captured(cmd!(sh, "apt-get update -q"), "apt-get update", cancel)?;
    run_captured(
        cmd!(sh, "apt-get install -y -q mmdebstrap").env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install mmdebstrap",
        cancel,
    )?;
    if !present() {
        bail!("mmdebstrap still not runnable after `apt-get install mmdebstrap`");
    }
    Ok(())
}

fn build_rootfs(
    sh: &Shell,
    spec: &BaseImageSpec,
    recipe: &[String],
    tarball: &Path,
    cancel: &CancellationToken,
) -> Result<()> {
    sh.create_dir(&spec.out_dir).with_context(|| format!("creating {}", spec.out_dir.display()))?;
    remove_stale_tarballs(sh, &spec.out_dir)?;
    // Written aside and renamed, so an interrupted run never leaves a tarball that looks finished.
    let partial = tarball.with_extension("tar.partial");
    let sources = &spec.sources;
    let result = run_captured(
        cmd!(sh, "mmdebstrap --quiet --format=tar {recipe...} {partial} {sources...}"),
        "mmdebstrap",
        cancel,
    );
    if let Err(err) = result {
        let _ = sh.remove_path(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, tarball).with_context(|| format!("renaming {}", partial.display()))
}

fn remove_stale_tarballs(sh: &Shell, dir: &Path) -> Result<()> {
    for path in sh.read_dir(dir)? {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("rootfs-") {
            sh.remove_path(&path)?;
        }
    }
    Ok(())
}

fn import(sh: &Shell, image: &str, fingerprint: &str, tarball: &Path, cancel: &CancellationToken) -> Result<()> {
    let label = format!("LABEL {FINGERPRINT_LABEL}={fingerprint}");
    run_captured(
        cmd!(sh, "docker import")
            .args(["--change", "ENV LANG=C.UTF-8"])
            .args(["--change", "CMD [\"/bin/bash\"]"])
            .args(["--change", &label])
            .arg(tarball)
            .arg(image),
        "docker import",
        cancel,
    )
}

/// Runs quietly; on failure the error carries the tail of stderr, which says what went wrong.
fn run_captured(command: xshell::Cmd<'_>, what: &str, cancel: &CancellationToken) -> Result<()> {
    let output = match crate::process::run(command, cancel, GRACE).with_context(|| format!("starting {what}"))? {
        crate::process::Ran::Exited(output) => output,
        crate::process::Ran::Cancelled => bail!(INTERRUPTED),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    bail!("{what} failed ({}):\n{tail}", output.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BaseImageSpec {
        BaseImageSpec::bookworm(Path::new("/ws"))
    }

    #[test]
    fn recipe_lists_each_package_once_in_a_stable_order() {
        let mut shuffled = spec();
        shuffled.packages = vec!["tini".into(), "ca-certificates".into(), "tini".into()];
        let include = recipe_args(&shuffled).into_iter().find(|a| a.starts_with("--include="));
        assert_eq!(include.as_deref(), Some("--include=ca-certificates,tini"));
        assert_eq!(fingerprint(&recipe_args(&shuffled)), fingerprint(&recipe_args(&spec())));
    }

    #[test]
    fn fingerprint_changes_with_the_recipe() {
        let mut bigger = spec();
        bigger.packages.push("curl".into());
        assert_ne!(fingerprint(&recipe_args(&bigger)), fingerprint(&recipe_args(&spec())));
        assert_eq!(fingerprint(&recipe_args(&spec())).len(), 16);
    }

    #[test]
    fn bad_names_are_rejected_before_anything_runs() {
        let mut bad = spec();
        bad.packages.push("--force-yes".into());
        let err = ensure(&Shell::new().unwrap(), &bad, &CancellationToken::new()).unwrap_err().to_string();
        assert!(err.contains("--force-yes"), "{err}");
    }

    #[test]
    fn ensure_creates_once_then_finds_the_image() {
        if !docker_available() {
            return;
        }
        let sh = Shell::new().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let spec = BaseImageSpec::bookworm(&root);
        let cancel = CancellationToken::new();
        let first = ensure(&sh, &spec, &cancel).unwrap();
        eprintln!("base image: {first:?}");
        assert_eq!(ensure(&sh, &spec, &cancel).unwrap(), BaseImageStatus::AlreadyPresent);
        let fingerprint = image_fingerprint(&sh, &spec.image).unwrap();
        assert_eq!(fingerprint, Some(super::fingerprint(&recipe_args(&spec))));
    }

    #[test]
    fn missing_mmdebstrap_is_explained() {
        if !docker_available() {
            return;
        }
        let sh = Shell::new().unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let docker = std::env::split_paths(&path)
            .map(|dir| dir.join("docker"))
            .find(|candidate| candidate.is_file())
            .expect("docker answered, so it is on PATH");
        // A PATH holding only docker: no mmdebstrap, no apt-get, no id, as on a bare machine.
        let bin = sh.create_temp_dir().unwrap();
        std::os::unix::fs::symlink(&docker, bin.path().join("docker")).unwrap();
        sh.set_var("PATH", bin.path());
        let mut spec = BaseImageSpec::bookworm(bin.path());
        spec.image = "rehearsal-test/never-created:missing-mmdebstrap".into();
        let err = ensure(&sh, &spec, &CancellationToken::new()).unwrap_err().to_string();
        assert!(err.contains("apt-get install mmdebstrap"), "{err}");
        assert!(!sh.path_exists(&spec.out_dir), "nothing written before mmdebstrap runs");
    }

    /// Docker tests fail under CI=true rather than silently skip.
    fn docker_available() -> bool {
        let sh = Shell::new().unwrap();
        if require_docker(&sh).is_ok() {
            return true;
        }
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but Docker is not reachable");
        eprintln!("note: Docker not reachable, skipping");
        false
    }
}
