//! Prometheus metrics of the service: HTTP, pattern executions, agents, dependencies, pool and process.

use anyhow::Result;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub executions: IntCounterVec,
    pub execution_duration: HistogramVec,
    pub agents_active: IntGauge,
    pub agent_task_duration: HistogramVec,
    pub confidence: Histogram,
    pub last_confidence: Gauge,
    pub patterns_total: IntGauge,
    pub db_pool: IntGaugeVec,
    pub dependency_up: GaugeVec,
    pub breaker_state: GaugeVec,
    pub breaker_opened: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let latency = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("control_plane_http_requests_total", "HTTP requests by matched route and status"),
                &["route", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new("control_plane_http_request_duration_seconds", "HTTP request latency")
                    .buckets(latency.clone()),
                &["route"],
            )?,
            executions: IntCounterVec::new(
                Opts::new("control_plane_pattern_executions_total", "Pattern executions by pattern and outcome"),
                &["pattern", "status"],
            )?,
            execution_duration: HistogramVec::new(
                HistogramOpts::new("control_plane_execution_duration_seconds", "Time to run one pattern execution")
                    .buckets(latency.clone()),
                &["pattern"],
            )?,
            agents_active: IntGauge::new("control_plane_agents_active", "Agents currently running a task")?,
            agent_task_duration: HistogramVec::new(
                HistogramOpts::new("control_plane_agent_task_duration_seconds", "Time one agent spends on its task")
                    .buckets(latency),
                &["role"],
            )?,
            confidence: Histogram::with_opts(
                HistogramOpts::new("control_plane_executions_confidence", "Confidence score of execution results")
                    .buckets(vec![0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]),
            )?,
            last_confidence: Gauge::new(
                "control_plane_executions_last_confidence",
                "Confidence score of the most recent execution",
            )?,
            patterns_total: IntGauge::new("control_plane_patterns_total", "Patterns known to the service")?,
            db_pool: IntGaugeVec::new(
                Opts::new("control_plane_db_pool_connections", "Postgres pool connections by state"),
                &["state"],
            )?,
            dependency_up: GaugeVec::new(
                Opts::new("control_plane_dependency_up", "1 when the dependency answered its last check"),
                &["dependency"],
            )?,
            breaker_state: GaugeVec::new(
                Opts::new("control_plane_circuit_breaker_state", "0 closed, 1 open, 2 half-open"),
                &["dependency"],
            )?,
            breaker_opened: IntGaugeVec::new(
                Opts::new("control_plane_circuit_breaker_opened", "Times the breaker opened since start"),
                &["dependency"],
            )?,
            registry,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<()> {
        let r = &self.registry;
        r.register(Box::new(self.http_requests.clone()))?;
        r.register(Box::new(self.http_duration.clone()))?;
        r.register(Box::new(self.executions.clone()))?;
        r.register(Box::new(self.execution_duration.clone()))?;
        r.register(Box::new(self.agents_active.clone()))?;
        r.register(Box::new(self.agent_task_duration.clone()))?;
        r.register(Box::new(self.confidence.clone()))?;
        r.register(Box::new(self.last_confidence.clone()))?;
        r.register(Box::new(self.patterns_total.clone()))?;
        r.register(Box::new(self.db_pool.clone()))?;
        r.register(Box::new(self.dependency_up.clone()))?;
        r.register(Box::new(self.breaker_state.clone()))?;
        r.register(Box::new(self.breaker_opened.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(())
    }

    pub fn set_pool(&self, status: deadpool_postgres::Status) {
        let in_use = status.size.saturating_sub(status.available);
        self.db_pool.with_label_values(&["idle"]).set(status.available as i64);
        self.db_pool.with_label_values(&["in_use"]).set(in_use as i64);
        self.db_pool.with_label_values(&["max"]).set(status.max_size as i64);
        self.db_pool.with_label_values(&["waiting"]).set(status.waiting as i64);
    }

    pub fn set_dependency(&self, name: &str, up: bool) {
        self.dependency_up.with_label_values(&[name]).set(if up { 1.0 } else { 0.0 });
    }

    pub fn set_breaker(&self, name: &str, breaker: &crate::breaker::Snapshot) {
        self.breaker_state.with_label_values(&[name]).set(breaker.state.as_number());
        self.breaker_opened.with_label_values(&[name]).set(breaker.opened_total as i64);
    }

    /// The text exposition format Prometheus scrapes.
    pub fn render(&self) -> Result<String> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8(out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_contract_metric() {
        let m = Metrics::new().unwrap();
        m.executions.with_label_values(&["review", "succeeded"]).inc();
        m.execution_duration.with_label_values(&["review"]).observe(0.01);
        m.agent_task_duration.with_label_values(&["draft"]).observe(0.001);
        m.http_requests.with_label_values(&["/health", "200"]).inc();
        m.http_duration.with_label_values(&["/health"]).observe(0.001);
        m.confidence.observe(0.9);
        m.set_dependency("postgres", true);
        m.set_pool(deadpool_postgres::Status { max_size: 10, size: 2, available: 1, waiting: 0 });
        let text = m.render().unwrap();
        for name in [
            "control_plane_pattern_executions_total{pattern=\"review\",status=\"succeeded\"} 1",
            "control_plane_execution_duration_seconds_bucket",
            "control_plane_agents_active",
            "control_plane_agent_task_duration_seconds_bucket",
            "control_plane_executions_confidence_bucket",
            "control_plane_patterns_total",
            "control_plane_http_requests_total",
            "control_plane_http_request_duration_seconds_bucket",
            "control_plane_db_pool_connections{state=\"in_use\"} 1",
            "control_plane_dependency_up{dependency=\"postgres\"} 1",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
    }
}
