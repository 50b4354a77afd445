//! Stages and gates are read by hand: common keys and the keys of their `kind` share one mapping.

use super::data_gates::{ContainerGate, EtcdGate, LogsGate, PrometheusGate, RedisGate, SqlGate};
use super::de::from_node;
use super::diag::{Diagnostic, nearest};
use super::drills::{BackupDrill, DrillSpec, RollbackDrill};
use super::model::{ExitCodeGate, Gate, GateCommon, GateSpec, Stage, StageCommon, StageSpec};
use super::security_gates::{CorsGate, ProbeGate, RateLimitGate, SecretsScanGate, TlsGate};
use super::tree::{Node, Value};

/// Reads the `stages:` list, collecting every error rather than stopping at the first.
pub fn read_stages(node: Option<&Node>, errors: &mut Vec<Diagnostic>) -> Vec<Stage> {
    let Some(node) = node else { return Vec::new() };
    let Some(items) = node.as_seq() else {
        errors.push(Diagnostic::new("`stages` must be a list").at(node.span).found(node.describe()));
        return Vec::new();
    };
    items.iter().filter_map(|item| read_stage(item).map_err(|d| errors.push(d)).ok()).collect()
}

fn read_stage(node: &Node) -> Result<Stage, Diagnostic> {
    let (common_node, spec_node) = split(node, StageCommon::FIELDS, "stage")?;
    let common: StageCommon = from_node(&common_node)?;
    let kind_node = node.get("kind").expect("deserialized `kind` exists");
    let spec = stage_spec(&common.kind, &spec_node).map_err(|d| with_kind_help(d, StageCommon::FIELDS))?;
    let spec = spec.ok_or_else(|| unknown_kind("stage", &common.kind, kind_node, StageSpec::KINDS))?;
    let mut errors = Vec::new();
    let mut gates = read_gates(node.get("gates"), &mut errors);
    if matches!(spec, StageSpec::Command(_) | StageSpec::Migrate(_))
        && !gates.iter().any(|g| matches!(g.spec, GateSpec::ExitCode(_)))
    {
        gates.insert(0, implicit_exit_code_gate(node));
    }
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    Ok(Stage { common, spec, gates, span: node.span })
}

/// A command or migrate stage without an `exit_code` gate still fails when its program does.
fn implicit_exit_code_gate(stage: &Node) -> Gate {
    let common = GateCommon {
        name: Some("exit code".into()),
        kind: "exit_code".into(),
        description: Some("added because the stage declares no exit_code gate".into()),
        checklist: Vec::new(),
        timeout: None,
        allow_empty: false,
    };
    Gate { common, spec: GateSpec::ExitCode(ExitCodeGate::default()), span: stage.span }
}

fn stage_spec(kind: &str, node: &Node) -> Result<Option<StageSpec>, Diagnostic> {
    Ok(Some(match kind {
        "command" => StageSpec::Command(from_node(node)?),
        "verify" => StageSpec::Verify(from_node(node)?),
        "build" => StageSpec::Build(from_node(node)?),
        "base_image" => StageSpec::BaseImage(from_node(node)?),
        "helm" => StageSpec::Helm(from_node(node)?),
        "compose" => StageSpec::Compose(from_node(node)?),
        "bench" => StageSpec::Bench(from_node(node)?),
        "drill" => StageSpec::Drill(drill_spec(node)?),
        "migrate" => StageSpec::Migrate(from_node(node)?),
        "certificate" => StageSpec::Certificate(from_node(node)?),
        _ => return Ok(None),
    }))
}

/// A drill's `drill:` key picks its type; the other keys are that type's.
fn drill_spec(node: &Node) -> Result<DrillSpec, Diagnostic> {
    let Some(which) = node.get("drill") else {
        return Err(Diagnostic::new("a `drill` stage needs `drill:`, the drill it runs")
            .at(node.span)
            .expected(format!("`drill:` one of {}", DrillSpec::TYPES.join(", "))));
    };
    let rest = Node {
        value: Value::Map(
            node.as_map().unwrap_or_default().iter().filter(|(k, _)| k.as_str() != Some("drill")).cloned().collect(),
        ),
        span: node.span,
    };
    // A rule about one key points at that key.
    let at = |key: &str| node.get(key).unwrap_or(node);
    Ok(match which.as_str().unwrap_or_default() {
        "rollback" => {
            let spec: RollbackDrill = from_node(&rest)?;
            DrillSpec::Rollback(valid(spec, |s| s.fingerprints.validate(), at("fingerprints"))?)
        }
        "backup" => DrillSpec::Backup(valid(from_node(&rest)?, BackupDrill::validate, at("dump"))?),
        "faults" => DrillSpec::Faults(super::faults::read(&rest, read_gates)?),
        other => return Err(unknown_kind("drill", other, which, DrillSpec::TYPES)),
    })
}

pub(super) fn read_gates(node: Option<&Node>, errors: &mut Vec<Diagnostic>) -> Vec<Gate> {
    let Some(node) = node else { return Vec::new() };
    if matches!(node.value, Value::Null) {
        return Vec::new();
    }
    let Some(items) = node.as_seq() else {
        errors.push(Diagnostic::new("`gates` must be a list").at(node.span).found(node.describe()));
        return Vec::new();
    };
    items.iter().filter_map(|item| read_gate(item).map_err(|d| errors.push(d)).ok()).collect()
}

fn read_gate(node: &Node) -> Result<Gate, Diagnostic> {
    let (common_node, spec_node) = split(node, GateCommon::FIELDS, "gate")?;
    let common: GateCommon = from_node(&common_node)?;
    let kind_node = node.get("kind").expect("deserialized `kind` exists");
    let spec = gate_spec(&common.kind, &spec_node).map_err(|d| with_kind_help(d, GateCommon::FIELDS))?;
    let spec = spec.ok_or_else(|| unknown_kind("gate", &common.kind, kind_node, GateSpec::KINDS))?;
    Ok(Gate { common, spec, span: node.span })
}

fn gate_spec(kind: &str, node: &Node) -> Result<Option<GateSpec>, Diagnostic> {
    Ok(Some(match kind {
        "exit_code" => GateSpec::ExitCode(from_node(node)?),
        "output" => GateSpec::Output(from_node(node)?),
        "tcp" => GateSpec::Tcp(from_node(node)?),
        "http" => GateSpec::Http(from_node(node)?),
        "websocket" => GateSpec::Websocket(from_node(node)?),
        "sql" => GateSpec::Sql(valid(from_node(node)?, SqlGate::validate, node)?),
        "redis" => GateSpec::Redis(valid(from_node(node)?, RedisGate::validate, node)?),
        "etcd" => GateSpec::Etcd(valid(from_node(node)?, EtcdGate::validate, node)?),
        "prometheus" => GateSpec::Prometheus(valid(from_node(node)?, PrometheusGate::validate, node)?),
        "container" => GateSpec::Container(valid(from_node(node)?, ContainerGate::validate, node)?),
        "logs" => GateSpec::Logs(valid(from_node(node)?, LogsGate::validate, node)?),
        "probe" => GateSpec::Probe(valid(from_node(node)?, ProbeGate::validate, node)?),
        "rate_limit" => GateSpec::RateLimit(valid(from_node(node)?, RateLimitGate::validate, node)?),
        "cors" => GateSpec::Cors(valid(from_node(node)?, CorsGate::validate, node)?),
        "tls" => GateSpec::Tls(valid(from_node(node)?, TlsGate::validate, node)?),
        "secrets_scan" => GateSpec::SecretsScan(valid(from_node(node)?, SecretsScanGate::validate, node)?),
        _ => return Ok(None),
    }))
}

/// Rules across a spec's keys (one of several, pairs that go together) that types alone cannot say.
fn valid<T>(spec: T, rule: fn(&T) -> Result<(), String>, node: &Node) -> Result<T, Diagnostic> {
    rule(&spec).map_err(|message| Diagnostic::new(message).at(node.span))?;
    Ok(spec)
}

/// Splits a mapping into the common keys and the kind's keys, each a mapping with the same span.
fn split(node: &Node, common: &[&str], what: &str) -> Result<(Node, Node), Diagnostic> {
    let Some(entries) = node.as_map() else {
        return Err(Diagnostic::new(format!("each {what} must be a mapping"))
            .at(node.span)
            .expected(format!("a mapping with `name:` and `kind:`"))
            .found(node.describe()));
    };
    let (mine, theirs): (Vec<_>, Vec<_>) =
        entries.iter().cloned().partition(|(k, _)| k.as_str().is_some_and(|k| common.contains(&k)));
    Ok((Node { value: Value::Map(mine), span: node.span }, Node { value: Value::Map(theirs), span: node.span }))
}

fn unknown_kind(what: &str, kind: &str, at: &Node, kinds: &[&str]) -> Diagnostic {
    let quoted: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
    Diagnostic::new(format!("unknown {what} kind `{kind}`"))
        .at(at.span)
        .expected(format!("one of {}", quoted.join(", ")))
        .suggest(kind, kinds.iter().copied())
}

/// An unknown key in a kind's part may be a misspelt common key: widen the list and the suggestion.
fn with_kind_help(mut d: Diagnostic, common: &[&str]) -> Diagnostic {
    let Some(key) = d.message.strip_prefix("unknown key `").and_then(|r| r.strip_suffix('`')) else { return d };
    // A gate nested in a drill was already widened with the gate's common keys.
    if d.expected.as_deref().is_some_and(|e| e.contains("or a common key")) {
        return d;
    }
    let common_list: Vec<String> = common.iter().map(|c| format!("`{c}`")).collect();
    d.expected = Some(match d.expected.take() {
        Some(own) => format!("{own}, or a common key: {}", common_list.join(", ")),
        None => format!("a common key: {}", common_list.join(", ")),
    });
    if d.help.is_none()
        && let Some(near) = nearest(key, common.iter().copied())
    {
        d.help = Some(format!("did you mean `{near}`?"));
    }
    d
}
