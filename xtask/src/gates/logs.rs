//! `logs`: a container's recent log lines are JSON objects, and none is louder than a level.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;
use serde_json::Value;

use super::Check;
use crate::config::{GateSpec, Level, LogsGate};

/// Lines read when neither `since` nor `tail` is given: recent enough, bounded.
const DEFAULT_TAIL: u64 = 1000;

pub async fn check(gate: &LogsGate, allow_empty: bool) -> Check {
    let expected = GateSpec::Logs(gate.clone()).target();
    let lines = async {
        let docker = crate::docker::connect().await.map_err(|e| e.to_string())?;
        let id = super::container::find(&docker, &gate.selector()).await?;
        read(&docker, &id, gate).await
    };
    match lines.await {
        Ok(lines) => judge(gate, allow_empty, expected, &lines),
        Err(e) => Check::new(false, expected, e),
    }
}

async fn read(docker: &Docker, id: &str, gate: &LogsGate) -> Result<Vec<String>, String> {
    let since = gate.since.map_or(0, |d| (jiff::Timestamp::now().as_second() - d.0.as_secs() as i64) as i32);
    let tail = gate.tail.or(gate.since.is_none().then_some(DEFAULT_TAIL));
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        since,
        tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
        ..Default::default()
    };
    let mut stream = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        match chunk.map_err(|e| format!("reading logs: {e}"))? {
            LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => {
                text.push_str(&String::from_utf8_lossy(&message));
            }
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
}

fn judge(gate: &LogsGate, allow_empty: bool, expected: String, lines: &[String]) -> Check {
    if lines.is_empty() {
        return Check::new(allow_empty, expected, "no log lines");
    }
    let mut problems = Vec::new();
    if gate.json {
        let plain: Vec<&String> = lines.iter().filter(|l| !is_json_object(l)).collect();
        if let Some(first) = plain.first() {
            problems.push(format!(
                "{} of {} lines are not JSON objects, e.g. {:?}",
                plain.len(),
                lines.len(),
                clip(first)
            ));
        }
    }
    if let Some(max) = gate.max_level {
        let loud: Vec<(&String, Level)> =
            lines.iter().filter_map(|l| level(l).map(|lv| (l, lv))).filter(|(_, lv)| *lv > max).collect();
        if let Some((first, lv)) = loud.first() {
            problems.push(format!("{} lines above {max}, e.g. {lv}: {:?}", loud.len(), clip(first)));
        }
    }
    if problems.is_empty() {
        Check::new(true, expected, format!("{} lines as expected", lines.len()))
    } else {
        Check::new(false, expected, problems.join("; "))
    }
}

fn is_json_object(line: &str) -> bool {
    matches!(serde_json::from_str::<Value>(line.trim()), Ok(Value::Object(_)))
}

/// The `level` field of a JSON line; plain lines have none.
fn level(line: &str) -> Option<Level> {
    let value: Value = serde_json::from_str(line.trim()).ok()?;
    Level::parse(value.get("level")?.as_str()?)
}

fn clip(line: &str) -> String {
    line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(json: bool, max_level: Option<Level>) -> LogsGate {
        LogsGate { container: Some("x".into()), project: None, service: None, since: None, tail: None, json, max_level }
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn json_and_levels() {
        let good = lines(&[r#"{"level":"INFO","msg":"up"}"#, r#"{"level":"warn","msg":"slow"}"#]);
        assert!(judge(&gate(true, Some(Level::Warn)), false, String::new(), &good).passed);
        let c = judge(&gate(true, Some(Level::Info)), false, String::new(), &good);
        assert!(!c.passed && c.actual.contains("1 lines above info"), "{}", c.actual);
        let plain = lines(&["starting", r#"{"level":"info"}"#, "[1, 2]"]);
        let c = judge(&gate(true, None), false, String::new(), &plain);
        assert!(c.actual.starts_with("2 of 3 lines are not JSON"), "{}", c.actual);
        assert!(!judge(&gate(true, None), false, String::new(), &[]).passed);
        assert!(judge(&gate(true, None), true, String::new(), &[]).passed);
    }
}
