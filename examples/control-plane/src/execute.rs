//! Runs a pattern: each of its agents does a small, deterministic task, and the result gets a confidence score.

use std::time::{Duration, Instant};

use prometheus::IntGauge;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{db::Pattern, metrics::Metrics};

pub struct Outcome {
    pub output: Value,
    pub confidence: f64,
    pub duration_ms: f64,
}

pub async fn run(pattern: &Pattern, input: &Value, metrics: &Metrics) -> Outcome {
    let start = Instant::now();
    let digest = Sha256::digest(input.to_string().as_bytes());
    let mut steps = Vec::new();
    for (i, agent) in pattern.agents.iter().enumerate() {
        let active = ActiveAgent::start(&metrics.agents_active);
        let task_start = Instant::now();
        // A few milliseconds of simulated work, varying with the input so latency has a real spread.
        tokio::time::sleep(Duration::from_millis(1 + u64::from(digest[i % digest.len()] % 4))).await;
        let seconds = task_start.elapsed().as_secs_f64();
        drop(active);
        metrics.agent_task_duration.with_label_values(&[agent.role.as_str()]).observe(seconds);
        steps.push(json!({ "agent": agent.name, "role": agent.role, "ms": round2(seconds * 1000.0) }));
    }
    Outcome {
        output: json!({ "steps": steps, "digest": hex(&digest[..8]) }),
        confidence: confidence(&digest),
        duration_ms: round2(start.elapsed().as_secs_f64() * 1000.0),
    }
}

/// Counts an agent as active until dropped, so a request cancelled mid-task (client gone) still decrements.
struct ActiveAgent(IntGauge);

impl ActiveAgent {
    fn start(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for ActiveAgent {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A score in [0.5, 1.0] derived from the input, so equal inputs score equally.
pub fn confidence(digest: &[u8]) -> f64 {
    let byte = f64::from(digest.first().copied().unwrap_or(0));
    round2(0.5 + byte / 255.0 * 0.5)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_agent_is_released_on_drop() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let active = ActiveAgent::start(&gauge);
        assert_eq!(gauge.get(), 1);
        drop(active);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn confidence_stays_in_range() {
        assert_eq!(confidence(&[0]), 0.5);
        assert_eq!(confidence(&[255]), 1.0);
        assert_eq!(confidence(&[]), 0.5);
    }
}
