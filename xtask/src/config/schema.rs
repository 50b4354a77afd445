//! The JSON Schema of pipeline.yaml, generated from the model types (committed as `pipeline.schema.json`).

use schemars::{JsonSchema, schema_for};
use serde_json::{Map, Value, json};

use super::model::*;

/// Each stage kind with the schema of its own keys.
fn stage_kinds() -> Vec<(&'static str, Value)> {
    vec![
        ("command", of::<CommandStage>()),
        ("verify", of::<VerifyStage>()),
        ("build", of::<BuildStage>()),
        ("base_image", of::<BaseImageStage>()),
        ("helm", of::<HelmStage>()),
        ("compose", of::<ComposeStage>()),
        ("bench", of::<BenchStage>()),
        // One schema per drill type (see `drill_types`); this entry only names the kind.
        ("drill", Value::Null),
        ("migrate", of::<MigrateStage>()),
        ("certificate", of::<CertificateStage>()),
    ]
}

/// Each drill type (`drill:` in a `drill` stage) with the schema of its own keys.
fn drill_types() -> Vec<(&'static str, Value)> {
    vec![("rollback", of::<RollbackDrill>()), ("backup", of::<BackupDrill>()), ("faults", of::<FaultsDrill>())]
}

/// Each gate kind with the schema of its own keys.
fn gate_kinds() -> Vec<(&'static str, Value)> {
    vec![
        ("exit_code", of::<ExitCodeGate>()),
        ("output", of::<OutputGate>()),
        ("tcp", of::<TcpGate>()),
        ("http", of::<HttpGate>()),
        ("websocket", of::<WebsocketGate>()),
        ("sql", of::<SqlGate>()),
        ("redis", of::<RedisGate>()),
        ("etcd", of::<EtcdGate>()),
        ("prometheus", of::<PrometheusGate>()),
        ("container", of::<ContainerGate>()),
        ("logs", of::<LogsGate>()),
        ("probe", of::<ProbeGate>()),
        ("rate_limit", of::<RateLimitGate>()),
        ("cors", of::<CorsGate>()),
        ("tls", of::<TlsGate>()),
        ("secrets_scan", of::<SecretsScanGate>()),
    ]
}

fn of<T: JsonSchema>() -> Value {
    schema_for!(T).to_value()
}

pub fn generate() -> Value {
    let mut defs = Map::new();
    let mut root = of::<Header>();
    take_defs(&mut root, &mut defs);

    let mut gate_refs = Vec::new();
    for (kind, spec) in gate_kinds() {
        let name = format!("Gate_{kind}");
        let gate = merged(kind, of::<GateCommon>(), spec, &mut defs);
        defs.insert(name.clone(), gate);
        gate_refs.push(json!({ "$ref": format!("#/$defs/{name}") }));
    }
    let mut stage_refs = Vec::new();
    let drills = drill_types().into_iter().map(|(drill, spec)| ("drill", Some(drill), spec));
    let kinds = stage_kinds().into_iter().filter(|(_, spec)| !spec.is_null()).map(|(kind, spec)| (kind, None, spec));
    for (kind, drill, spec) in kinds.chain(drills) {
        let name = drill.map_or_else(|| format!("Stage_{kind}"), |d| format!("Stage_{kind}_{d}"));
        let mut stage = merged(kind, of::<StageCommon>(), spec, &mut defs);
        stage["properties"]["gates"] = json!({ "type": "array", "items": { "oneOf": gate_refs } });
        if let Some(drill) = drill {
            stage["properties"]["drill"] = json!({ "const": drill });
            stage["required"].as_array_mut().expect("merged lists required keys").push(json!("drill"));
        }
        defs.insert(name.clone(), stage);
        stage_refs.push(json!({ "$ref": format!("#/$defs/{name}") }));
    }
    // Gate lists inside a drill (a fault's `during` and `recover`) hold the same gates as a stage.
    defs.insert("GateList".into(), json!({ "type": "array", "items": { "oneOf": gate_refs } }));
    root["properties"]["stages"] = json!({ "type": "array", "items": { "oneOf": stage_refs } });
    root["title"] = json!("pipeline.yaml");
    root["$defs"] = Value::Object(defs);
    root
}

/// One object schema: the common keys, the kind's keys, and `kind` fixed to this kind.
fn merged(kind: &str, mut common: Value, mut spec: Value, defs: &mut Map<String, Value>) -> Value {
    take_defs(&mut common, defs);
    take_defs(&mut spec, defs);
    let mut properties = common["properties"].as_object().cloned().unwrap_or_default();
    properties.extend(spec["properties"].as_object().cloned().unwrap_or_default());
    properties.insert("kind".into(), json!({ "const": kind }));
    let mut required: Vec<Value> = common["required"].as_array().cloned().unwrap_or_default();
    required.extend(spec["required"].as_array().cloned().unwrap_or_default());
    json!({
        "type": "object",
        "description": spec.get("description").cloned().unwrap_or(Value::Null),
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn take_defs(schema: &mut Value, defs: &mut Map<String, Value>) {
    if let Some(Value::Object(found)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) {
        defs.extend(found);
    }
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema() {
        let stages: Vec<&str> = stage_kinds().iter().map(|(k, _)| *k).collect();
        assert_eq!(stages, StageSpec::KINDS);
        let gates: Vec<&str> = gate_kinds().iter().map(|(k, _)| *k).collect();
        assert_eq!(gates, GateSpec::KINDS);
        let drills: Vec<&str> = drill_types().iter().map(|(k, _)| *k).collect();
        assert_eq!(drills, DrillSpec::TYPES);
    }
}
