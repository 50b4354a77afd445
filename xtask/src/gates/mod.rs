//! Gates: checks with an expectation. Readiness gates retry with backoff until their deadline.

mod container;
mod cors;
mod etcd;
mod exit_code;
mod http;
mod json_assert;
mod logs;
mod output;
mod probe;
mod prometheus;
mod rate_limit;
mod redis;
mod secrets_scan;
mod sql;
mod tcp;
mod tls;
mod tls_client;
mod websocket;

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{Gate, GateSpec};
use crate::run::record::{GateRecord, Status};

/// A readiness gate gives up after this long unless its `timeout` says otherwise.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One attempt's verdict.
#[derive(Debug, Clone)]
pub struct Check {
    pub passed: bool,
    pub expected: String,
    pub actual: String,
    /// What was sent and received, for evidence (gates that talk a protocol).
    pub transcript: Option<String>,
}

impl Check {
    pub fn new(passed: bool, expected: impl Into<String>, actual: impl Into<String>) -> Check {
        Check { passed, expected: expected.into(), actual: actual.into(), transcript: None }
    }

    pub fn with_transcript(self, transcript: String) -> Check {
        Check { transcript: Some(transcript), ..self }
    }
}

/// What a command stage produced, for the gates that judge it.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub struct GateCx<'a> {
    pub command: Option<&'a CommandOutput>,
    pub cancel: &'a CancellationToken,
    /// The pipeline file's directory: relative paths in gates that read files start here.
    pub base_dir: &'a Path,
}

/// Runs a gate to its verdict: once for gates on finished work, repeatedly for readiness gates.
pub async fn evaluate(gate: &Gate, cx: &GateCx<'_>) -> GateRecord {
    let started = Instant::now();
    let deadline = started + gate.common.timeout.map_or(DEFAULT_DEADLINE, |d| d.0);
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    let (status, check) = loop {
        attempts += 1;
        let check = tokio::select! {
            check = check_once(gate, cx) => check,
            () = cx.cancel.cancelled() => break (Status::Interrupted, Check::new(false, gate.spec.target(), "interrupted")),
        };
        if check.passed {
            break (Status::Passed, check);
        }
        if !retries(&gate.spec) || Instant::now() + backoff > deadline {
            break (Status::Failed, check);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cx.cancel.cancelled() => break (Status::Interrupted, check),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    let mut record = record(gate, status, check.expected, check.actual);
    record.attempts = attempts;
    record.duration_ms = started.elapsed().as_millis() as u64;
    record.transcript = check.transcript;
    record
}

/// Gates on a finished command judge facts that will not change; readiness gates wait.
/// An etcd `absent_after` gate waits inside its one attempt, for exactly its own window.
fn retries(spec: &GateSpec) -> bool {
    match spec {
        // Judgements on files, and bursts that would themselves trip a limiter, are not retried.
        GateSpec::ExitCode(_)
        | GateSpec::Output(_)
        | GateSpec::SecretsScan(_)
        | GateSpec::Probe(_)
        | GateSpec::RateLimit(_) => false,
        GateSpec::Etcd(g) => g.absent_after.is_none(),
        _ => true,
    }
}

async fn check_once(gate: &Gate, cx: &GateCx<'_>) -> Check {
    match &gate.spec {
        GateSpec::ExitCode(g) => exit_code::check(g, cx.command),
        GateSpec::Output(g) => output::check(g, cx.command),
        GateSpec::Tcp(g) => tcp::check(g).await,
        GateSpec::Http(g) => http::check(g, gate.common.allow_empty).await,
        GateSpec::Websocket(g) => websocket::check(g, gate.common.allow_empty).await,
        GateSpec::Sql(g) => sql::check(g, gate.common.allow_empty).await,
        GateSpec::Redis(g) => redis::check(g).await,
        GateSpec::Etcd(g) => etcd::check(g).await,
        GateSpec::Prometheus(g) => prometheus::check(g).await,
        GateSpec::Container(g) => container::check(g).await,
        GateSpec::Logs(g) => logs::check(g, gate.common.allow_empty).await,
        GateSpec::Probe(g) => probe::check(g).await,
        GateSpec::RateLimit(g) => rate_limit::check(g).await,
        GateSpec::Cors(g) => cors::check(g).await,
        GateSpec::Tls(g) => tls::check(g).await,
        GateSpec::SecretsScan(g) => secrets_scan::check(g, cx.base_dir, gate.common.allow_empty),
    }
}

/// A record for a gate that never ran because its stage stopped first.
pub fn not_evaluated(gate: &Gate, status: Status, why: &str) -> GateRecord {
    let mut record = record(gate, status, gate.spec.target(), why.to_string());
    record.attempts = 0;
    record
}

fn record(gate: &Gate, status: Status, expected: String, actual: String) -> GateRecord {
    GateRecord {
        name: gate.name(),
        kind: gate.kind().to_string(),
        target: gate.spec.target(),
        checklist: gate.common.checklist.clone(),
        status,
        expected,
        actual,
        attempts: 1,
        duration_ms: 0,
        transcript: None,
    }
}
