//! The fault drill's keys (`drill: faults`). Its faults hold gate lists (`during`, `recover`) that are
//! read by hand like a stage's `gates`, so every gate keeps its location.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::de::from_node;
use super::diag::Diagnostic;
use super::model::{Dur, Gate, JsonPathText};
use super::tree::Node;

/// Faults injected one after another into a running compose project; each must be noticed and
/// recovered from within its deadline. Every injected fault is written to a ledger first and undone
/// on exit, on Ctrl-C, or by the next run if this one died.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsDrill {
    /// The compose project the faults hit (the same `project` as the compose stage).
    pub project: String,
    /// The compose file, relative to the pipeline file: needed to scale a service.
    #[serde(default)]
    pub file: Option<String>,
    /// Variables for the compose file (the compose stage's `env`), when scaling.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub faults: Vec<Fault>,
}

/// One fault, its expectations while it holds, and its recovery deadline.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub name: String,
    /// For people reading the file and the plan.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for readers of pipeline.yaml")]
    pub description: Option<String>,
    /// `kill` (SIGKILL; the restart policy must bring it back), `stop` and `pause` (undone after `hold`),
    /// `scale` (to `replicas`, then one replica is killed under `load`; scaled back afterwards).
    pub action: FaultAction,
    /// The compose service hit.
    pub service: String,
    /// How long a `stop` or `pause` lasts before it is undone (default 5s); `during` gates run meanwhile.
    #[serde(default)]
    pub hold: Option<Dur>,
    /// Every `recover` gate must pass within this long after the fault ends; the time it took is the
    /// fault's recovery time.
    pub recover_within: Dur,
    /// Restart counts of services, compared before the fault and after recovery: `unchanged` or `increased`.
    #[serde(default)]
    pub restarts: BTreeMap<String, RestartChange>,
    /// `scale`: how many replicas (default 3).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// `scale`: traffic sent through the balancer while one replica is killed.
    #[serde(default)]
    pub load: Option<FaultLoad>,
    /// `scale`: a write through the balancer must be readable through every replica.
    #[serde(default)]
    pub stateless: Option<StatelessCheck>,
    /// Gates that must pass while the fault holds (each retries within its own `timeout`).
    #[serde(default)]
    pub during: GateList,
    /// Gates that must pass after the fault ends, within `recover_within`.
    #[serde(default)]
    pub recover: GateList,
    /// Checklist items this fault's own checks (recovery, restarts, load, spread) prove.
    #[serde(default)]
    pub checklist: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    Kill,
    Stop,
    Pause,
    Scale,
}

impl FaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Stop => "stop",
            FaultAction::Pause => "pause",
            FaultAction::Scale => "scale",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartChange {
    Unchanged,
    Increased,
}

/// Open-model traffic during a fault; requests that fail (connect errors, timeouts, 5xx) are counted.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultLoad {
    pub url: String,
    #[serde(default = "default_get")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Requests per second (default 50).
    #[serde(default)]
    pub rate: Option<f64>,
    /// How long the traffic runs (default 10s); the replica is killed a third of the way in.
    #[serde(default)]
    pub duration: Option<Dur>,
    /// Failed requests allowed (default 0).
    #[serde(default)]
    pub max_failed: u64,
}

fn default_get() -> String {
    "GET".into()
}

/// A write through the balancer, then reads of it through the balancer until every replica has
/// answered one (replicas are told apart by a response header).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatelessCheck {
    /// POSTed with `write_json` as its body.
    pub write_url: String,
    pub write_json: serde_json::Value,
    /// Where the written id is in the answer (default `$.id`).
    #[serde(default)]
    pub id_path: Option<JsonPathText>,
    /// Read URL; `{id}` is replaced by the written id.
    pub read_url: String,
    /// The response header naming the replica that answered (default `x-instance`).
    #[serde(default)]
    pub instance_header: Option<String>,
    /// Sent with the write and every read (e.g. `authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A list of gates inside a drill; parsed by hand (`fill_gates`) so each gate keeps its location.
#[derive(Debug, Clone, Default)]
pub struct GateList(pub Vec<Gate>);

impl<'de> Deserialize<'de> for GateList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GateList, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(GateList::default())
    }
}

impl JsonSchema for GateList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GateList".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // `schema.rs` points this at the gate definitions.
        schemars::json_schema!({ "type": "array", "description": "Gates, as in a stage's `gates:`." })
    }
}

/// Reads a fault drill's keys (without `drill:`), then each fault's gate lists by hand.
pub fn read(
    node: &Node,
    read_gates: impl Fn(Option<&Node>, &mut Vec<Diagnostic>) -> Vec<Gate>,
) -> Result<FaultsDrill, Diagnostic> {
    let mut drill: FaultsDrill = from_node(node)?;
    let items = node.get("faults").and_then(Node::as_seq).unwrap_or_default();
    let mut errors = Vec::new();
    for (fault, item) in drill.faults.iter_mut().zip(items) {
        fault.during = GateList(read_gates(item.get("during"), &mut errors));
        fault.recover = GateList(read_gates(item.get("recover"), &mut errors));
    }
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    check_faults(&drill, node)?;
    Ok(drill)
}

impl FaultsDrill {
    pub fn target(&self) -> String {
        let faults: Vec<String> = self.faults.iter().map(|f| format!("{} {}", f.action.as_str(), f.service)).collect();
        format!("faults on {}: {}", self.project, faults.join(", "))
    }

    /// Every gate the faults hold.
    pub fn gates(&self) -> Vec<&Gate> {
        self.faults.iter().flat_map(|f| f.during.0.iter().chain(&f.recover.0)).collect()
    }

    /// Checklist items the faults' own checks and their gates prove.
    pub fn checklist(&self) -> Vec<&String> {
        let own = self.faults.iter().flat_map(|f| &f.checklist);
        own.chain(self.gates().into_iter().flat_map(|g| &g.common.checklist)).collect()
    }
}

/// Keys that only make sense for one action, and a scale fault's needs.
fn check_faults(drill: &FaultsDrill, node: &Node) -> Result<(), Diagnostic> {
    let items = node.get("faults").and_then(Node::as_seq).unwrap_or_default();
    if drill.faults.is_empty() {
        let at = node.get("faults").map_or(node.span, |n| n.span);
        return Err(Diagnostic::new("this fault drill has no faults, so it could never fail")
            .at(at)
            .expected("at least one fault: `{ name, action, service, recover_within }`"));
    }
    for (fault, item) in drill.faults.iter().zip(items) {
        let scale_only = [
            ("replicas", fault.replicas.is_some()),
            ("load", fault.load.is_some()),
            ("stateless", fault.stateless.is_some()),
        ];
        if fault.action != FaultAction::Scale
            && let Some((key, _)) = scale_only.iter().find(|(_, given)| *given)
        {
            let at = item.key(key).map_or(item.span, |k| k.span);
            return Err(Diagnostic::new(format!("`{key}` applies to `action: scale` only")).at(at));
        }
        if fault.action == FaultAction::Scale && drill.file.is_none() {
            return Err(Diagnostic::new("a `scale` fault needs the drill's `file:` (the compose file) to scale with")
                .at(item.span));
        }
        if fault.action == FaultAction::Scale && fault.replicas.is_some_and(|r| r < 2) {
            let at = item.get("replicas").map_or(item.span, |n| n.span);
            return Err(Diagnostic::new("`replicas` must be at least 2 (one is killed)").at(at));
        }
    }
    Ok(())
}
