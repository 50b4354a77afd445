//! `prometheus`: every scrape target up, a PromQL query's samples within a bound, or alerting rules loaded.

use std::time::Duration;

use serde_json::Value;

use super::Check;
use crate::config::{Bound, GateSpec, PrometheusGate};

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(gate: &PrometheusGate) -> Check {
    let expected = GateSpec::Prometheus(gate.clone()).target();
    let base = gate.url.trim_end_matches('/');
    let verdict = if gate.targets_up {
        api(base, "targets", &[("state", "active")]).await.and_then(|d| targets_up(&d))
    } else if let Some(query) = &gate.query {
        let min = gate.min_results.unwrap_or(1);
        api(base, "query", &[("query", query)]).await.and_then(|d| samples_ok(&d, min, gate.bound))
    } else {
        api(base, "rules", &[("type", "alert")]).await.and_then(|d| rules_loaded(&d, &gate.rules))
    };
    match verdict {
        Ok(actual) => Check::new(true, expected, actual),
        Err(actual) => Check::new(false, expected, actual),
    }
}

/// The `data` of a successful `/api/v1/<path>` answer.
async fn api(base: &str, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| format!("HTTP client: {e}"))?;
    let url = format!("{base}/api/v1/{path}");
    let full = reqwest::Url::parse_with_params(&url, query).map_err(|e| format!("invalid URL {url}: {e}"))?;
    let response = client.get(full).send().await.map_err(|e| format!("{url} unreachable: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("{url} answered {status}, not JSON: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("{url} answered {status}: {}", body["error"].as_str().unwrap_or("no error text")));
    }
    Ok(body["data"].clone())
}

fn targets_up(data: &Value) -> Result<String, String> {
    let targets = data["activeTargets"].as_array().cloned().unwrap_or_default();
    if targets.is_empty() {
        return Err("no active targets".into());
    }
    let down: Vec<String> = targets
        .iter()
        .filter(|t| t["health"] != "up")
        .map(|t| {
            let error = t["lastError"].as_str().filter(|e| !e.is_empty()).unwrap_or("no error yet");
            format!(
                "{} ({}): {} — {error}",
                t["labels"]["job"].as_str().unwrap_or("?"),
                t["scrapeUrl"].as_str().unwrap_or("?"),
                t["health"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if down.is_empty() {
        Ok(format!("{} targets up", targets.len()))
    } else {
        Err(format!("{} of {} targets not up: {}", down.len(), targets.len(), down.join("; ")))
    }
}

fn samples_ok(data: &Value, min: usize, bound: Option<Bound>) -> Result<String, String> {
    let samples = samples(data)?;
    if samples.len() < min {
        return Err(format!("{} results, fewer than {min}", samples.len()));
    }
    if let Some(b) = bound {
        let outside: Vec<String> = samples
            .iter()
            .filter(|(_, v)| !b.op.holds(*v, b.value))
            .map(|(series, v)| format!("{series} = {v}"))
            .collect();
        if !outside.is_empty() {
            return Err(format!("not {} {}: {}", b.op.symbol(), b.value, outside.join(", ")));
        }
    }
    let shown: Vec<String> = samples.iter().take(5).map(|(s, v)| format!("{s} = {v}")).collect();
    Ok(format!("{} results: {}", samples.len(), shown.join(", ")))
}

/// Each sample as (series, value); a scalar result is one unnamed sample.
fn samples(data: &Value) -> Result<Vec<(String, f64)>, String> {
    let value_of = |pair: &Value| -> Result<f64, String> {
        let text = pair[1].as_str().ok_or_else(|| format!("unexpected sample {pair}"))?;
        text.parse().map_err(|_| format!("unexpected sample value {text:?}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| Ok((series_name(&s["metric"]), value_of(&s["value"])?)))
            .collect(),
        Some("scalar") => Ok(vec![("scalar".into(), value_of(&data["result"])?)]),
        other => Err(format!("the query returned a {}, expected an instant vector", other.unwrap_or("?"))),
    }
}

fn series_name(metric: &Value) -> String {
    let Some(labels) = metric.as_object() else { return "{}".into() };
    let name = labels.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

fn rules_loaded(data: &Value, wanted: &[String]) -> Result<String, String> {
    let loaded: Vec<&str> = data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["type"] == "alerting")
        .filter_map(|r| r["name"].as_str())
        .collect();
    let missing: Vec<&str> = wanted.iter().map(String::as_str).filter(|w| !loaded.contains(w)).collect();
    if missing.is_empty() {
        Ok(format!("{} alerting rules loaded", loaded.len()))
    } else {
        Err(format!("missing: {} (loaded: {})", missing.join(", "), loaded.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Op;
    use serde_json::json;

    #[test]
    fn bounds_apply_to_every_sample() {
        let data = json!({ "resultType": "vector", "result": [
            { "metric": { "__name__": "up", "job": "a" }, "value": [1.0, "1"] },
            { "metric": { "__name__": "up", "job": "b" }, "value": [1.0, "0"] },
        ]});
        assert!(samples_ok(&data, 1, None).is_ok());
        assert!(samples_ok(&data, 3, None).unwrap_err().contains("fewer than 3"));
        let err = samples_ok(&data, 1, Some(Bound { op: Op::Eq, value: 1.0 })).unwrap_err();
        assert!(err.contains("up{job=\"b\"} = 0"), "{err}");
        let empty = json!({ "resultType": "vector", "result": [] });
        assert!(samples_ok(&empty, 1, None).is_err());
    }

    #[test]
    fn names_missing_rules() {
        let data = json!({ "groups": [{ "rules": [{ "type": "alerting", "name": "A" }, { "type": "recording", "name": "B" }] }] });
        assert!(rules_loaded(&data, &["A".into()]).is_ok());
        assert_eq!(rules_loaded(&data, &["A".into(), "B".into()]).unwrap_err(), "missing: B (loaded: A)");
    }
}
