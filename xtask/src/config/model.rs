//! The typed pipeline: what `pipeline.yaml` means once it has been parsed and checked.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::data_gates::*;
use super::source::Span;

pub const SCHEMA_VERSION: u32 = 1;
pub const DEFAULT_ENV: &str = "local";

/// A whole pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub header: Header,
    pub stages: Vec<Stage>,
    /// The environment this pipeline was resolved for.
    pub env: String,
}

/// Everything at the top level except the stages, which are read by hand (see `stage.rs`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Schema version of this file; only `1` exists (checked before the rest is read).
    #[allow(dead_code, reason = "checked on the tree in `check_root`; declared so the key is known")]
    pub version: u32,
    /// A title for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Values for `${NAME}` references. Each environment may override them.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Named environments; `local` is used when `--env` is not given.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// Secrets available as `${secret:NAME}`: read from the environment variable NAME, or from the file
    /// named by NAME_FILE, or generated per run when `generate` is set. They are redacted in all output.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// The checklist this pipeline proves: every item is covered by a gate or a sign-off.
    #[serde(default)]
    pub checklist: Vec<ChecklistItem>,
    /// Items that need a person: shown in the report with approver and date when given.
    #[serde(default)]
    pub signoffs: Vec<Signoff>,
    /// Report settings.
    #[serde(default)]
    pub reports: Reports,
    /// The ordered stages.
    #[serde(default)]
    #[schemars(skip)]
    #[allow(dead_code, reason = "stages are read by hand in `stage.rs`; declared so the key is known")]
    pub stages: serde::de::IgnoredAny,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default)]
    pub description: Option<String>,
    /// Overrides of the top-level variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// For people reading the file.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for readers of pipeline.yaml")]
    pub description: Option<String>,
    /// Generate a random value for each run when none is provided.
    #[serde(default)]
    pub generate: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// A short stable id that gates and sign-offs refer to, e.g. `db.postgres`.
    pub id: String,
    pub section: String,
    pub item: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signoff {
    /// The checklist item id this sign-off covers.
    pub checklist: String,
    /// Who signs (a role until someone signed).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub approver: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reports {
    /// A directory of templates (`report.md`, `report.html`, `junit.xml`) replacing the built-in ones.
    #[serde(default)]
    pub templates: Option<String>,
}

/// One stage: common fields plus the fields of its kind.
#[derive(Debug, Clone)]
pub struct Stage {
    pub common: StageCommon,
    pub spec: StageSpec,
    pub gates: Vec<Gate>,
    pub span: Span,
}

impl Stage {
    pub fn name(&self) -> &str {
        &self.common.name
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageCommon {
    /// Unique name, used by `needs`, `--only`, `--from` and `--skip`.
    pub name: String,
    /// What the stage does.
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Stages that must pass first. Without `needs` a stage follows the one before it;
    /// `needs: []` lets it start at once, in parallel with others.
    #[serde(default)]
    pub needs: Option<Vec<String>>,
    /// The stage is cancelled and fails after this long.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// `on_success` (default): a normal stage. `on_failure` and `always`: cleanup stages that run after the
    /// others, even when a gate failed or the run was interrupted.
    #[serde(default)]
    pub when: When,
    /// Run only in these environments (default: all).
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(skip)]
    #[allow(dead_code, reason = "gates are read by hand in `stage.rs`; declared so the key is known")]
    pub gates: serde::de::IgnoredAny,
}

impl StageCommon {
    pub const FIELDS: &[&str] = &["name", "kind", "description", "needs", "timeout", "when", "environments", "gates"];
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum When {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
}

/// The kind-specific part of a stage.
#[derive(Debug, Clone)]
pub enum StageSpec {
    Command(CommandStage),
    Verify(VerifyStage),
    Build(BuildStage),
}

impl StageSpec {
    pub const KINDS: &[&str] = &["command", "verify", "build"];
}

/// Runs one program with its arguments (no shell), capturing its output.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandStage {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory, relative to the pipeline file.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Builds Docker images through the engine API and tags them by policy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildStage {
    pub images: Vec<ImageSpec>,
    /// Tags every image gets: `sha` (git short sha, `-dirty` when the tree has uncommitted changes),
    /// `version` (from `version_from`, else `git describe`), `latest`.
    #[serde(default = "default_tags")]
    pub tags: Vec<TagPolicy>,
    /// Network mode for build containers (e.g. `host`).
    #[serde(default)]
    pub network: Option<String>,
    /// How many images build at once.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Push every tag to this registry (credentials: REGISTRY_USERNAME / REGISTRY_PASSWORD).
    #[serde(default)]
    pub push: Option<String>,
}

fn default_tags() -> Vec<TagPolicy> {
    vec![TagPolicy::Sha]
}

fn default_parallel() -> usize {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagPolicy {
    Sha,
    Version,
    Latest,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Repository name, e.g. `rehearsal/control-plane`.
    pub name: String,
    /// Build context directory, relative to the pipeline file. Its `.dockerignore` is honoured.
    pub context: String,
    /// Dockerfile path inside the context (default `Dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Multi-stage target.
    #[serde(default)]
    pub target: Option<String>,
    /// A Cargo.toml whose `version` the `version` tag uses.
    #[serde(default)]
    pub version_from: Option<String>,
}

/// A stage that only runs its gates.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyStage {}

/// One gate: common fields plus the fields of its kind.
#[derive(Debug, Clone)]
pub struct Gate {
    pub common: GateCommon,
    pub spec: GateSpec,
    pub span: Span,
}

impl Gate {
    pub fn kind(&self) -> &str {
        &self.common.kind
    }

    pub fn name(&self) -> String {
        self.common.name.clone().unwrap_or_else(|| self.common.kind.clone())
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateCommon {
    #[serde(default)]
    pub name: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Checklist item ids this gate proves.
    #[serde(default)]
    pub checklist: Vec<String>,
    /// Readiness gates retry with backoff until this deadline.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// An empty answer (no rows, no log lines) passes; it fails by default.
    #[serde(default)]
    pub allow_empty: bool,
}

impl GateCommon {
    pub const FIELDS: &[&str] = &["name", "kind", "description", "checklist", "timeout", "allow_empty"];
}

/// The kind-specific part of a gate.
#[derive(Debug, Clone)]
pub enum GateSpec {
    ExitCode(ExitCodeGate),
    Output(OutputGate),
    Tcp(TcpGate),
    Sql(SqlGate),
    Redis(RedisGate),
    Etcd(EtcdGate),
    Prometheus(PrometheusGate),
    Container(ContainerGate),
    Logs(LogsGate),
}

impl GateSpec {
    pub const KINDS: &[&str] =
        &["exit_code", "output", "tcp", "sql", "redis", "etcd", "prometheus", "container", "logs"];
}

/// The command's exit code (command stages only).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitCodeGate {
    #[serde(default)]
    pub equals: i32,
}

/// The command's output (command stages only).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputGate {
    #[serde(default)]
    pub stream: Stream,
    /// Every one of these must appear.
    #[serde(default)]
    pub contains: Vec<String>,
    /// None of these may appear.
    #[serde(default)]
    pub not_contains: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    #[default]
    Both,
}

/// A TCP port accepts connections.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpGate {
    /// `host:port`.
    pub address: String,
}

/// A duration written with a unit: `500ms`, `10s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map(Dur).map_err(serde::de::Error::custom)
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim().chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("duration `{text}` has no unit; write e.g. `{text}s` or `{text}ms`"));
    }
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration `{text}` ({e}); expected a number with a unit, like 500ms, 10s, 5m or 1h")
    })
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration with a unit: 500ms, 10s, 5m, 1h 30m.",
            "pattern": "^\\s*([0-9]+\\s*[a-zµ]+\\s*)+$"
        })
    }
}

impl StageSpec {
    /// What the stage acts on, resolved, for `plan` and reports.
    pub fn target(&self) -> String {
        match self {
            StageSpec::Command(c) => std::iter::once(c.program.as_str())
                .chain(c.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            StageSpec::Verify(_) => "gates only".into(),
            StageSpec::Build(b) => {
                let names: Vec<&str> = b.images.iter().map(|i| i.name.as_str()).collect();
                format!("docker build {}", names.join(", "))
            }
        }
    }
}

impl GateSpec {
    /// What the gate checks, resolved, for `plan` and reports.
    pub fn target(&self) -> String {
        match self {
            GateSpec::ExitCode(g) => format!("exit code = {}", g.equals),
            GateSpec::Output(g) => {
                let mut parts: Vec<String> = g.contains.iter().map(|c| format!("contains {c:?}")).collect();
                parts.extend(g.not_contains.iter().map(|c| format!("lacks {c:?}")));
                format!("{:?} {}", g.stream, parts.join(", ")).to_lowercase()
            }
            GateSpec::Tcp(g) => format!("tcp://{}", g.address),
            GateSpec::Sql(g) => format!("{} {:?}", crate::redact::mask_url_password(&g.url), g.query),
            GateSpec::Redis(g) => g.target(),
            GateSpec::Etcd(g) => g.target(),
            GateSpec::Prometheus(g) => g.target(),
            GateSpec::Container(g) => g.target(),
            GateSpec::Logs(g) => g.target(),
        }
    }
}
