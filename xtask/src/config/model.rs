//! The typed pipeline: what `pipeline.yaml` means once it has been parsed and checked.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::data_gates::*;
pub use super::drills::*;
pub use super::faults::*;
pub use super::security_gates::*;
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
    /// The values of variables marked `secret: true` (after overrides): to be redacted everywhere.
    pub secret_values: Vec<String>,
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
    /// Values for `${NAME}` references. Each environment may override them. A value written as
    /// `{ value: "…", secret: true }` is redacted in all output, like a secret.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, VariableSchema>")]
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
    #[schemars(with = "BTreeMap<String, VariableSchema>")]
    pub variables: BTreeMap<String, String>,
}

/// A variable's value, or `{ value, secret: true }` to redact the value in all output.
// Read on the tree by `marked.rs`; this type only describes the two forms for the schema.
#[derive(JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
#[allow(dead_code, reason = "schema only")]
pub enum VariableSchema {
    Value(String),
    Marked {
        value: String,
        /// Redact this value in every output, like a secret.
        #[serde(default)]
        secret: bool,
        #[serde(default)]
        description: Option<String>,
    },
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
    /// Checklist items proven by the stage's own checks (builds, lint, health), besides its gates.
    #[serde(default)]
    pub checklist: Vec<String>,
    #[serde(default)]
    #[schemars(skip)]
    #[allow(dead_code, reason = "gates are read by hand in `stage.rs`; declared so the key is known")]
    pub gates: serde::de::IgnoredAny,
}

impl StageCommon {
    pub const FIELDS: &[&str] =
        &["name", "kind", "description", "needs", "timeout", "when", "environments", "checklist", "gates"];
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
    BaseImage(BaseImageStage),
    Helm(HelmStage),
    Compose(ComposeStage),
    Bench(BenchStage),
    Drill(DrillSpec),
    Migrate(MigrateStage),
    Certificate(CertificateStage),
}

impl StageSpec {
    pub const KINDS: &[&str] =
        &["command", "verify", "build", "base_image", "helm", "compose", "bench", "drill", "migrate", "certificate"];
}

/// Runs the service's migrations as a one-off container from the image just built, on a compose
/// project's network, and gates on its exit code (add `exit_code` / `output` gates to say more).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateStage {
    /// The image to run, e.g. `rehearsal/control-plane:${IMAGE_TAG}`.
    pub image: String,
    /// The command (after the image's entrypoint); default `["migrate"]`.
    #[serde(default = "default_migrate_command")]
    pub command: Vec<String>,
    /// The compose project whose network the container joins, so it reaches e.g. `postgres:5432`.
    #[serde(default)]
    pub project: Option<String>,
    /// A network to join by name instead (default: the project's `default` network).
    #[serde(default)]
    pub network: Option<String>,
    /// Environment of the container; `${secret:…}` values stay out of every output.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_migrate_command() -> Vec<String> {
    vec!["migrate".into()]
}

/// A certificate authority and a server certificate it signed, for TLS in local runs (no public CA here).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateStage {
    /// Where `ca.pem`, `cert.pem` and `key.pem` go; relative paths start at the run's directory (default `tls`).
    #[serde(default)]
    pub dir: Option<String>,
    /// DNS names and IP addresses the certificate is valid for.
    pub hosts: Vec<String>,
    /// How long the certificate stays valid (default 30 days).
    #[serde(default)]
    pub valid_for: Option<Dur>,
}

/// A load benchmark; each threshold is a gate.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchStage {
    /// The request mix; each picked in proportion to its weight.
    pub scenario: Vec<BenchRequest>,
    /// Closed model: this many connections sending back to back (default 10).
    #[serde(default)]
    pub connections: Option<usize>,
    /// Open model: a constant arrival rate (requests per second), latency measured from each
    /// request's intended send time.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Connections the open model may use at most.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// How long the load runs (default 10s) …
    #[serde(default)]
    pub duration: Option<Dur>,
    /// … or how many requests it sends.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Per-request timeout (default 10s).
    #[serde(default)]
    pub request_timeout: Option<Dur>,
    #[serde(default)]
    pub insecure_tls: bool,
    /// Sample these containers' memory and CPU through the engine while the load runs.
    #[serde(default)]
    pub containers: Vec<String>,
    /// … or every container of this compose project.
    #[serde(default)]
    pub project: Option<String>,
    /// Run for an hour instead (memory-leak soak); thresholds apply as written.
    #[serde(default)]
    pub soak: bool,
    /// `p95 < 100ms`, `error_rate < 0.1%`, `throughput > 1000/min`, `memory < 1GiB`, `cpu < 50%`:
    /// each a gate.
    #[serde(default)]
    pub thresholds: Vec<ThresholdSpec>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchRequest {
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_method")]
    pub method: String,
    /// `{{counter}}` and `{{uuid}}` are filled per request in the URL and body.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

fn default_weight() -> u32 {
    1
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// e.g. `p95 < 100ms`.
    pub check: Threshold,
    #[serde(default)]
    pub checklist: Vec<String>,
}

/// A parsed `metric op value` threshold, checked when the file is loaded.
#[derive(Debug, Clone)]
pub struct Threshold(pub crate::bench::Threshold);

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Threshold, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Threshold).map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
    }
}

impl JsonSchema for Threshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Threshold".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "metric op value: p50/p90/p95/p99/p99.9/max, error_rate, throughput, memory, cpu"
        })
    }
}

/// Creates the Debian base image (mmdebstrap + `docker import`) when it is missing: there is no registry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BaseImageStage {
    #[serde(default = "default_base_image")]
    pub image: String,
    /// Packages added to the defaults (ca-certificates, tini).
    #[serde(default)]
    pub packages: Vec<String>,
}

fn default_base_image() -> String {
    "rehearsal/debian:bookworm".into()
}

/// Lints, renders and checks a Helm chart with one environment's values.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelmStage {
    /// Chart directory, relative to the pipeline file.
    pub chart: String,
    /// Values files, later ones win (e.g. `values-${ENVIRONMENT}.yaml`).
    #[serde(default)]
    pub values: Vec<String>,
    /// `--set key=value` expressions.
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// The helm executable (default: `helm` on PATH, else the repository's stand-in).
    #[serde(default)]
    pub helm: Option<String>,
    /// Every app container must run this image tag (the tag the build stage produced).
    #[serde(default)]
    pub image_tag: Option<String>,
    #[serde(default = "default_liveness")]
    pub liveness_path: String,
    #[serde(default = "default_readiness")]
    pub readiness_path: String,
    /// Environment variables every app container must receive.
    #[serde(default)]
    pub required_env: Vec<String>,
    /// A Kubernetes context for a server-side dry-run apply; without one it is reported as not run.
    #[serde(default)]
    pub kube_context: Option<String>,
}

fn default_liveness() -> String {
    "/health/live".into()
}

fn default_readiness() -> String {
    "/health/ready".into()
}

/// Brings a compose project up and waits until every service is healthy (or, for one-shot services,
/// exited 0), or takes it down.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeStage {
    /// The compose file, relative to the pipeline file.
    pub file: String,
    /// Project name; keep it per run (e.g. `rehearsal-${RUN_ID}`) so two runs never collide.
    pub project: String,
    #[serde(default)]
    pub action: ComposeAction,
    /// Only these services (default: all).
    #[serde(default)]
    pub services: Vec<String>,
    /// Variables for the compose file.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How long `up` waits for health (default 3m).
    #[serde(default)]
    pub wait: Option<Dur>,
    /// `down` also removes volumes.
    #[serde(default)]
    pub volumes: bool,
    /// `up` starts only the listed `services`, not what they depend on (e.g. the service after a
    /// `migrate` stage, when the file also has a one-shot migrate service for people running it by hand).
    #[serde(default)]
    pub no_deps: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComposeAction {
    #[default]
    Up,
    Down,
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
    /// Fixed tags added to the policy's, e.g. the packaged version (`15` for Postgres).
    #[serde(default)]
    pub extra_tags: Vec<String>,
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
    /// Pass even when the check finds no data (a JSONPath that matches nothing, no rows, no log lines).
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
    Http(HttpGate),
    Websocket(WebsocketGate),
    Sql(SqlGate),
    Redis(RedisGate),
    Etcd(EtcdGate),
    Prometheus(PrometheusGate),
    Container(ContainerGate),
    Logs(LogsGate),
    Probe(ProbeGate),
    RateLimit(RateLimitGate),
    Cors(CorsGate),
    Tls(TlsGate),
    SecretsScan(SecretsScanGate),
}

impl GateSpec {
    pub const KINDS: &[&str] = &[
        "exit_code",
        "output",
        "tcp",
        "http",
        "websocket",
        "sql",
        "redis",
        "etcd",
        "prometheus",
        "container",
        "logs",
        "probe",
        "rate_limit",
        "cors",
        "tls",
        "secrets_scan",
    ];
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

/// An HTTP endpoint answers as expected.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpGate {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A text request body.
    #[serde(default)]
    pub body: Option<String>,
    /// A request body sent as JSON (with `content-type: application/json`); not with `body`.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    #[serde(default)]
    pub expect: HttpExpect,
    #[serde(default)]
    pub tls: TlsOptions,
    /// Each request gives up after this long (default 10s); the gate's `timeout` bounds all retries.
    #[serde(default)]
    pub request_timeout: Option<Dur>,
}

/// What an HTTP response must show.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpExpect {
    /// The status code, or a list of acceptable codes (default 200).
    #[serde(default)]
    pub status: Option<OneOrMany<u16>>,
    /// Response headers: name → expected value, or `exists`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Every one of these must appear in the body.
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// Assertions on the JSON body.
    #[serde(default)]
    pub json: Vec<JsonAssertion>,
    /// The whole exchange must take at most this long.
    #[serde(default)]
    pub latency: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// One check on the values a JSONPath selects. Give exactly one of `equals`, `all`, `any`, `count`,
/// `min_count`, `exists`. A path that matches nothing fails unless the gate sets `allow_empty`
/// (or the check asks for absence: `exists: false`, `count: 0`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonAssertion {
    /// A JSONPath (RFC 9535), e.g. `$.checks.*.status`.
    pub path: JsonPathText,
    /// The path selects one value, equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Every selected value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<serde_json::Value>,
    /// At least one selected value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<serde_json::Value>,
    /// How many values the path selects (when it selects one array: its length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// At least this many values (when it selects one array: its length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<usize>,
    /// The path selects something (`true`) or nothing (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl JsonAssertion {
    /// How many checks the assertion names; exactly one is meaningful.
    pub fn check_count(&self) -> usize {
        [
            self.equals.is_some(),
            self.all.is_some(),
            self.any.is_some(),
            self.count.is_some(),
            self.min_count.is_some(),
            self.exists.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// A JSONPath checked for syntax when the pipeline is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct JsonPathText(pub String);

impl<'de> Deserialize<'de> for JsonPathText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JsonPathText, D::Error> {
        let text = String::deserialize(d)?;
        serde_json_path::JsonPath::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid JSONPath `{text}`: {e}")))?;
        Ok(JsonPathText(text))
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Accept any server certificate (self-signed test endpoints only).
    #[serde(default)]
    pub insecure: bool,
    /// A PEM file of extra trusted certificates, relative to the working directory.
    #[serde(default)]
    pub ca: Option<String>,
}

/// A WebSocket endpoint completes the handshake and, optionally, answers a message.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebsocketGate {
    /// `ws://` or `wss://`.
    pub url: String,
    /// A text message to send once connected.
    #[serde(default)]
    pub send: Option<String>,
    /// A message must arrive that contains this text.
    #[serde(default)]
    pub expect: Option<String>,
    /// A JSON message must arrive that passes all these assertions.
    #[serde(default)]
    pub expect_json: Vec<JsonAssertion>,
    /// Connecting, and then waiting for the expected message, each give up after this long (default 5s).
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// For `wss://`: extra trust, or none at all.
    #[serde(default)]
    pub tls: TlsOptions,
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
            StageSpec::BaseImage(b) => format!("base image {}", b.image),
            StageSpec::Helm(h) => {
                let values = if h.values.is_empty() { String::new() } else { format!(" -f {}", h.values.join(" -f ")) };
                format!("helm lint/template {}{values}", h.chart)
            }
            StageSpec::Compose(c) => {
                let action = match (c.action, c.no_deps) {
                    (ComposeAction::Down, _) => "down",
                    (ComposeAction::Up, false) => "up",
                    (ComposeAction::Up, true) => "up --no-deps",
                };
                format!("compose -p {} -f {} {action} {}", c.project, c.file, c.services.join(" "))
                    .trim_end()
                    .to_string()
            }
            StageSpec::Migrate(m) => {
                let place = match (&m.network, &m.project) {
                    (Some(network), _) => format!(" on network {network}"),
                    (None, Some(project)) => format!(" on project {project}'s network"),
                    (None, None) => String::new(),
                };
                format!("docker run --rm {} {}{place}", m.image, m.command.join(" "))
            }
            StageSpec::Bench(b) => {
                let model = match (b.rate, b.connections) {
                    (Some(rate), _) => format!("open model {rate}/s"),
                    (None, c) => format!("{} connections", c.unwrap_or(10)),
                };
                let urls: Vec<&str> = b.scenario.iter().map(|r| r.url.as_str()).collect();
                format!("load {model} on {}", urls.join(", "))
            }
            StageSpec::Drill(d) => d.target(),
            StageSpec::Build(b) => {
                let names: Vec<&str> = b.images.iter().map(|i| i.name.as_str()).collect();
                format!("docker build {}", names.join(", "))
            }
            StageSpec::Certificate(c) => {
                format!("certificate for {} in {}", c.hosts.join(", "), c.dir.as_deref().unwrap_or("tls"))
            }
        }
    }
}

impl GateSpec {
    /// A contradiction in the gate's keys that types cannot express, with the key to point at.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let (url, schemes, assertions) = match self {
            GateSpec::Http(g) if g.body.is_some() && g.json.is_some() => {
                return Some(("json", "give either `body:` or `json:`, not both".into()));
            }
            GateSpec::Http(g) => (&g.url, ["http://", "https://"], &g.expect.json),
            GateSpec::Websocket(g) => (&g.url, ["ws://", "wss://"], &g.expect_json),
            _ => return None,
        };
        if !schemes.iter().any(|s| url.starts_with(s)) {
            return Some(("url", format!("`{url}` must start with {} or {}", schemes[0], schemes[1])));
        }
        let vague = assertions.iter().find(|a| a.check_count() != 1)?;
        Some((
            "kind",
            format!(
                "the JSON assertion on `{}` must name exactly one of `equals`, `all`, `any`, `count`, `min_count`, `exists`",
                vague.path.0
            ),
        ))
    }

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
            GateSpec::Http(g) => format!("{} {}", g.method.to_uppercase(), g.url),
            GateSpec::Websocket(g) => g.url.clone(),
            GateSpec::Sql(g) => g.target(),
            GateSpec::Redis(g) => g.target(),
            GateSpec::Etcd(g) => g.target(),
            GateSpec::Prometheus(g) => g.target(),
            GateSpec::Container(g) => g.target(),
            GateSpec::Logs(g) => g.target(),
            GateSpec::Probe(g) => g.target(),
            GateSpec::RateLimit(g) => g.target(),
            GateSpec::Cors(g) => g.target(),
            GateSpec::Tls(g) => g.target(),
            GateSpec::SecretsScan(g) => g.target(),
        }
    }
}
