//! Subcommands, one module each, plus what they share: finding and loading the pipeline file.

pub mod bench;
pub mod deploy;
pub mod drill;
pub mod plan;
pub mod report;
pub mod schema;
pub mod test;
pub mod unlock;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, LoadOptions, Pipeline, SecretSpec};

pub const EXIT_PASSED: u8 = 0;
pub const EXIT_GATE_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
/// Another run holds the environment, or a dead run left it locked; nothing was run.
pub const EXIT_LOCKED: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Options every subcommand that reads pipeline.yaml takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PipelineArgs {
    /// The pipeline file (default: pipeline.yaml here or in a parent directory).
    #[arg(long, short = 'f', global = true)]
    pub file: Option<PathBuf>,
    /// The environment to resolve (default: local).
    #[arg(long, short = 'e', global = true)]
    pub env: Option<String>,
    /// Override a variable: NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", global = true)]
    pub vars: Vec<String>,
}

/// Whether secrets are needed for real (a run) or only referenced (plan, validate).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Resolve,
    Placeholder,
}

pub struct Loaded {
    pub pipeline: Pipeline,
    pub file: PathBuf,
    pub base_dir: PathBuf,
}

/// Loads and checks the pipeline; on any problem prints located diagnostics and yields exit code 2.
pub fn load(args: &PipelineArgs, secrets: Secrets, builtins: BTreeMap<String, String>) -> Result<Loaded, ExitCode> {
    let (file, base_dir) = locate(args)?;
    let overrides = parse_vars(&args.vars).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_INVALID)
    })?;
    let mut builtins = builtins;
    builtins.insert("REPO_ROOT".into(), base_dir.display().to_string());
    if let Some(run_id) = builtins.get("RUN_ID").cloned() {
        builtins.insert("RUN_DIR".into(), runs_dir(&base_dir).join(run_id).display().to_string());
    }
    builtins.insert("ENVIRONMENT".into(), args.env.clone().unwrap_or_else(|| config::DEFAULT_ENV.into()));
    let lookup_env = |name: &str| std::env::var(name).ok();
    // One value per secret per run: a generated password must be the same everywhere it is used.
    let resolved = std::cell::RefCell::new(BTreeMap::<String, String>::new());
    let secret = |name: &str, spec: &SecretSpec| {
        if let Some(value) = resolved.borrow().get(name) {
            return Ok(value.clone());
        }
        let value = resolve_secret(name, spec, secrets)?;
        resolved.borrow_mut().insert(name.to_string(), value.clone());
        Ok(value)
    };
    let options = LoadOptions {
        env: args.env.as_deref(),
        overrides: &overrides,
        builtins: &builtins,
        lookup_env: &lookup_env,
        secret: &secret,
    };
    let result = config::read_source(&file).and_then(|source| config::load(&source, &options));
    match result {
        Ok(pipeline) => {
            for value in &pipeline.secret_values {
                crate::redact::register(value);
            }
            Ok(Loaded { pipeline, file, base_dir })
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            let n = diagnostics.items.len();
            eprintln!("\n{n} error{} in {}; nothing was run", if n == 1 { "" } else { "s" }, file.display());
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// The pipeline file and its directory (where `target/xtask/` lives), without reading the file.
pub fn locate(args: &PipelineArgs) -> Result<(PathBuf, PathBuf), ExitCode> {
    let file = match &args.file {
        Some(file) => file.clone(),
        None => find_pipeline().ok_or_else(|| {
            eprintln!("error: no pipeline.yaml in this directory or any parent; pass --file");
            ExitCode::from(EXIT_INVALID)
        })?,
    };
    let base_dir =
        file.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| ".".into());
    let base_dir = base_dir.canonicalize().unwrap_or(base_dir);
    Ok((file, base_dir))
}

/// `pipeline.yaml` here or in the nearest parent, as a relative path so messages stay short.
fn find_pipeline() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    let depth = here.ancestors().position(|dir| dir.join("pipeline.yaml").is_file())?;
    let mut path: PathBuf = std::iter::repeat_n("..", depth).collect();
    path.push("pipeline.yaml");
    Some(path)
}

fn parse_vars(vars: &[String]) -> Result<BTreeMap<String, String>, String> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("--var `{v}` is not NAME=VALUE")),
        })
        .collect()
}

/// A secret comes from the variable NAME, or the file named by NAME_FILE, or is generated per run.
fn resolve_secret(name: &str, spec: &SecretSpec, mode: Secrets) -> Result<String, String> {
    let value = if let Ok(value) = std::env::var(name) {
        value
    } else if let Ok(path) = std::env::var(format!("{name}_FILE")) {
        std::fs::read_to_string(&path)
            .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("{name}_FILE={path} cannot be read: {e}"))?
    } else if spec.generate || mode == Secrets::Placeholder {
        random_token()
    } else {
        return Err(format!("set the environment variable {name} or {name}_FILE"));
    };
    crate::redact::register(&value);
    Ok(value)
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Built-in variables for a load: `RUN_ID`, `GIT_SHA`, `GIT_DESCRIBE`, `IMAGE_TAG`.
pub fn builtins(run_id: &str, git: &crate::git::GitInfo) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("RUN_ID".to_string(), run_id.to_string()),
        ("GIT_SHA".to_string(), git.short_sha.clone().unwrap_or_else(|| "unknown".into())),
        ("GIT_DESCRIBE".to_string(), git.describe.clone().unwrap_or_else(|| "unknown".into())),
        ("IMAGE_TAG".to_string(), crate::stages::sha_tag(git)),
    ])
}

/// Where a pipeline's runs are kept.
pub fn runs_dir(base_dir: &Path) -> PathBuf {
    base_dir.join("target").join("xtask").join("runs")
}

pub fn split_list(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}
