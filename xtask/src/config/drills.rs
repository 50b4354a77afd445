//! The `drill` stage kind's specs: `drill:` inside the stage picks one (rollback, backup), plus the
//! data fingerprints drills take before and after.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::model::Dur;

/// What a `drill` stage rehearses, picked by its `drill:` key.
#[derive(Debug, Clone)]
pub enum DrillSpec {
    Rollback(RollbackDrill),
    Backup(BackupDrill),
    Faults(super::faults::FaultsDrill),
}

impl DrillSpec {
    pub const TYPES: &[&str] = &["rollback", "backup", "faults"];

    pub fn type_name(&self) -> &'static str {
        match self {
            DrillSpec::Rollback(_) => "rollback",
            DrillSpec::Backup(_) => "backup",
            DrillSpec::Faults(_) => "faults",
        }
    }

    /// Gates the drill holds inside its own keys (a fault's `during` and `recover`).
    pub fn gates(&self) -> Vec<&super::model::Gate> {
        match self {
            DrillSpec::Faults(f) => f.gates(),
            _ => Vec::new(),
        }
    }

    /// Checklist items named inside the drill's own keys.
    pub fn checklist(&self) -> Vec<&String> {
        match self {
            DrillSpec::Faults(f) => f.checklist(),
            _ => Vec::new(),
        }
    }

    pub fn target(&self) -> String {
        match self {
            DrillSpec::Rollback(r) => {
                format!("rollback drill: {} -> {} -> back, project {}", r.image, r.next.image, r.project)
            }
            DrillSpec::Backup(b) => {
                let parts: Vec<&str> = [("dump/restore", b.dump.is_some()), ("pitr", b.pitr.is_some())]
                    .into_iter()
                    .chain([("config", b.config.is_some())])
                    .filter_map(|(name, on)| on.then_some(name))
                    .collect();
                format!("backup drill ({}) on {}/{}", parts.join(", "), b.project, b.service)
            }
            DrillSpec::Faults(f) => f.target(),
        }
    }
}

/// Deploys release N+1 (image N plus later migrations) over the running N, writes through it, rolls the
/// application back to N and proves N serves, reads what N+1 wrote, and lost no data. Refuses first when
/// N+1's migrations would break N.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackDrill {
    /// The compose file of the running stack, relative to the pipeline file.
    pub file: String,
    /// The running stack's project.
    pub project: String,
    /// Variables for the compose file: the same as the stack's `up`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The service that serves (its container is replaced, then restored).
    #[serde(default = "default_service")]
    pub service: String,
    /// A one-shot service run to completion with N+1's image before N+1 serves (its migrations).
    #[serde(default)]
    pub migrate: Option<String>,
    /// The service's base URL: `/version` and `/health/ready` are read below it.
    pub url: String,
    /// Image N, running now; N+1 is built from it.
    pub image: String,
    pub next: NextRelease,
    /// Records written before N+1 and read back by N afterwards.
    pub canary: Canary,
    /// Writes through N+1 before rolling back (default 20); N must read every one.
    #[serde(default = "default_traffic")]
    pub traffic: u32,
    #[serde(default)]
    pub fingerprints: Fingerprints,
    /// N must serve again within this long of the rollback starting (a gate; default 2m).
    #[serde(default)]
    pub restore_within: Option<Dur>,
    /// How long each deploy waits for its services (default 3m).
    #[serde(default)]
    pub wait: Option<Dur>,
}

fn default_service() -> String {
    "control-plane".into()
}

fn default_traffic() -> u32 {
    20
}

/// Release N+1: image N with later migrations baked in (the service applies `MIGRATIONS_DIR` too).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NextRelease {
    /// The tag the drill builds N+1 as.
    pub image: String,
    /// N+1's extra `NNNN_name.sql` migrations, relative to the pipeline file. A file may declare
    /// `-- rollback-safe: no`; dropping or renaming tables or columns, changing a column's type and
    /// adding a required column are found unsafe for a rollback whatever the file declares.
    pub migrations: String,
    /// The version N+1 shows at `/version`.
    pub version: String,
    /// Where in the image the migrations go (the image's `MIGRATIONS_DIR`).
    #[serde(default = "default_migrations_dir")]
    pub migrations_dir: String,
    /// Variables overriding `env` while N+1 is deployed (its image tag, its version).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_migrations_dir() -> String {
    "/opt/migrations-next".into()
}

/// A write through the API and the read that must find it again.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// URL each write is POSTed to.
    pub write: String,
    /// The JSON body of a write; `{{n}}` is numbered per write.
    pub body: String,
    /// Field of the write's JSON answer holding the record's id (default `id`).
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// URL reading one record back; `{id}` is replaced by its id.
    pub read: String,
    /// Writes before N+1 is deployed (default 5).
    #[serde(default = "default_canaries")]
    pub count: u32,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_id_field() -> String {
    "id".into()
}

fn default_canaries() -> u32 {
    5
}

/// Data fingerprints: per-table row counts and checksums, invariant queries, Redis key counts.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fingerprints {
    /// `postgres://user:password@host:port/db` (password masked in all output).
    #[serde(default)]
    pub postgres: Option<String>,
    /// Tables fingerprinted: row count and an order-independent md5 of their rows.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Queries whose result must be the same before and after.
    #[serde(default)]
    pub invariants: Vec<Invariant>,
    /// `redis://:password@host:port`.
    #[serde(default)]
    pub redis: Option<String>,
    /// Key patterns (`SCAN MATCH`) whose key count must not fall.
    #[serde(default)]
    pub redis_keys: Vec<String>,
}

impl Fingerprints {
    pub fn validate(&self) -> Result<(), String> {
        if (!self.tables.is_empty() || !self.invariants.is_empty()) && self.postgres.is_none() {
            return Err("`fingerprints` with `tables` or `invariants` needs `postgres:` (a URL)".into());
        }
        if !self.redis_keys.is_empty() && self.redis.is_none() {
            return Err("`fingerprints` with `redis_keys` needs `redis:` (a URL)".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    pub name: String,
    pub query: String,
}

/// Backup and restore of the stack's Postgres, run inside its container: a dump restored into a scratch
/// database, point-in-time recovery from archived WAL, and the configuration archived and restored.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupDrill {
    /// The compose project of the stack.
    pub project: String,
    /// Its Postgres service (default `postgres`).
    #[serde(default = "default_postgres")]
    pub service: String,
    /// The database backed up.
    pub database: String,
    #[serde(default)]
    pub dump: Option<DumpDrill>,
    #[serde(default)]
    pub pitr: Option<PitrDrill>,
    #[serde(default)]
    pub config: Option<ConfigBackup>,
}

fn default_postgres() -> String {
    "postgres".into()
}

impl BackupDrill {
    pub fn validate(&self) -> Result<(), String> {
        if self.dump.is_none() && self.pitr.is_none() && self.config.is_none() {
            return Err("a backup drill needs at least one of `dump:`, `pitr:`, `config:`".into());
        }
        if let Some(dump) = &self.dump {
            if dump.fingerprints.tables.is_empty() && dump.fingerprints.invariants.is_empty() {
                return Err("`dump.fingerprints` must name `tables` or `invariants` to compare".into());
            }
            dump.fingerprints.validate()?;
        }
        Ok(())
    }
}

/// `pg_dump` restored into a scratch database; fingerprints of both must be equal.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DumpDrill {
    /// Extra `pg_dump` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Fingerprints of the live database; the scratch one is read at the same URL with its own name.
    pub fingerprints: Fingerprints,
    /// The restore must finish within this long (a gate).
    #[serde(default)]
    pub restore_within: Option<Dur>,
}

/// A base backup, rows written after a recorded time, and a scratch cluster recovered to that time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PitrDrill {
    /// The WAL archive inside the container (default `/var/lib/postgresql/archive`).
    #[serde(default = "default_archive")]
    pub archive: String,
    /// The server's configuration file, reused by the scratch cluster (default `/etc/postgresql/postgresql.conf`).
    #[serde(default = "default_pg_config")]
    pub config_file: String,
    /// How long recovery may take (default 2m).
    #[serde(default)]
    pub wait: Option<Dur>,
}

fn default_archive() -> String {
    "/var/lib/postgresql/archive".into()
}

fn default_pg_config() -> String {
    "/etc/postgresql/postgresql.conf".into()
}

/// Configuration files archived into the run directory and checked to restore byte for byte; with a
/// compose file, its rendered configuration too (secrets masked).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBackup {
    /// Files and directories, relative to the pipeline file.
    pub files: Vec<String>,
    /// A compose file whose rendered configuration (`config`) is archived too.
    #[serde(default)]
    pub compose: Option<String>,
    /// Variables for rendering it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}
