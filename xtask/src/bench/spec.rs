//! What a load run is asked to do: the load model, when to stop and the weighted request mix.

use std::time::Duration;

/// A complete description of one load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub model: Model,
    pub stop: Stop,
    pub scenario: Vec<WeightedRequest>,
    /// Per-request limit covering connect, send and reading the whole response.
    pub timeout: Duration,
    /// Accept any server certificate (self-signed rehearsal stacks).
    pub insecure_tls: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// `connections` connections, each sending its next request as soon as the previous answer arrived.
    Closed { connections: usize },
    /// A constant arrival rate; latency is measured from each request's intended send time.
    Open { rate_per_sec: f64, max_connections: usize },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Duration(Duration),
    Requests(u64),
}

/// One request of the scenario; `url` and `body` may contain `{{counter}}` and `{{uuid}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedRequest {
    pub weight: u32,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl WeightedRequest {
    /// A `GET` of `url` with weight 1.
    pub fn get(url: impl Into<String>) -> Self {
        WeightedRequest { weight: 1, method: "GET".to_string(), url: url.into(), headers: Vec::new(), body: None }
    }
}

impl LoadSpec {
    /// Rejects specs that cannot run, with a message naming the offending field.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.model {
            Model::Closed { connections } => {
                anyhow::ensure!(connections > 0, "closed model needs at least 1 connection");
            }
            Model::Open { rate_per_sec, max_connections } => {
                anyhow::ensure!(
                    rate_per_sec.is_finite() && rate_per_sec > 0.0,
                    "open model rate must be a positive number of requests per second, got {rate_per_sec}"
                );
                anyhow::ensure!(max_connections > 0, "open model needs max_connections >= 1");
            }
        }
        match self.stop {
            Stop::Duration(d) => anyhow::ensure!(!d.is_zero(), "run duration must be positive"),
            Stop::Requests(n) => anyhow::ensure!(n > 0, "request count must be positive"),
        }
        anyhow::ensure!(!self.timeout.is_zero(), "request timeout must be positive");
        anyhow::ensure!(!self.scenario.is_empty(), "scenario has no requests");
        anyhow::ensure!(self.scenario.iter().any(|r| r.weight > 0), "every request of the scenario has weight 0");
        Ok(())
    }
}
