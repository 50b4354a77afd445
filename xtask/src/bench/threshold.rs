//! Pass/fail thresholds such as `p95 < 100ms` or `error_rate < 0.1%`: parsing and evaluation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::resources::ResourceSummary;
use super::result::BenchResult;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile (50, 90, 95, 99, 99.9) or `max`, compared in milliseconds.
    Latency(Percentile),
    /// Failed share of requests, compared as a fraction (0.001 = 0.1 %).
    ErrorRate,
    /// Answers per second.
    Throughput,
    /// Highest peak memory of the sampled containers, in bytes.
    Memory,
    /// Highest mean CPU % of the sampled containers (100 = one core).
    Cpu,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Percentile {
    P50,
    P90,
    P95,
    P99,
    P99_9,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// `metric op value`, with the value already converted to the metric's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
    /// The text it was parsed from, shown as the expectation.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    pub expected: String,
    pub actual: String,
}

const EXAMPLES: &str = "expected `<metric> <op> <value>`, e.g. `p95 < 100ms`, `p99.9 <= 1s`, \
    `error_rate < 0.1%`, `throughput > 1000/min`, `memory < 1GiB`, `cpu < 50%`";

impl FromStr for Threshold {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Threshold> {
        let text = s.trim();
        let at = text
            .find(['<', '>', '='])
            .ok_or_else(|| anyhow::anyhow!("threshold {text:?} has no comparison; {EXAMPLES}"))?;
        let (name, rest) = text.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Op::Gt, v)
        } else {
            anyhow::bail!("threshold {text:?}: use <, <=, > or >=; {EXAMPLES}");
        };
        let metric = parse_metric(name.trim())
            .ok_or_else(|| anyhow::anyhow!("threshold {text:?}: unknown metric {:?}; {EXAMPLES}", name.trim()))?;
        let value = parse_value(metric, value.trim()).map_err(|e| anyhow::anyhow!("threshold {text:?}: {e}"))?;
        Ok(Threshold { metric, op, value, text: text.to_string() })
    }
}

fn parse_metric(name: &str) -> Option<Metric> {
    let p = |p| Some(Metric::Latency(p));
    match name.to_ascii_lowercase().as_str() {
        "p50" | "median" => p(Percentile::P50),
        "p90" => p(Percentile::P90),
        "p95" => p(Percentile::P95),
        "p99" => p(Percentile::P99),
        "p99.9" | "p999" => p(Percentile::P99_9),
        "max" => p(Percentile::Max),
        "error_rate" | "errors" => Some(Metric::ErrorRate),
        "throughput" | "rps" => Some(Metric::Throughput),
        "memory" | "mem" => Some(Metric::Memory),
        "cpu" => Some(Metric::Cpu),
        _ => None,
    }
}

/// Splits `12.5ms` into `(12.5, "ms")`.
fn number_and_unit(v: &str) -> Result<(f64, &str), String> {
    let end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(end);
    let n: f64 = num.parse().map_err(|_| format!("{v:?} does not start with a number"))?;
    Ok((n, unit.trim()))
}

fn parse_value(metric: Metric, v: &str) -> Result<f64, String> {
    let (n, unit) = number_and_unit(v)?;
    let scale = match metric {
        Metric::Latency(_) => match unit {
            "us" | "µs" => 0.001,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" | "min" => 60_000.0,
            _ => return Err(format!("latency {v:?} needs a unit: us, ms, s or min")),
        },
        Metric::ErrorRate => match unit {
            "%" => 0.01,
            "" if n <= 1.0 => 1.0,
            _ => {
                return Err(format!("error rate {v:?}: write a percentage (`0.1%`) or a fraction ≤ 1"));
            }
        },
        Metric::Throughput => match unit.trim_start_matches('/') {
            "s" | "sec" => 1.0,
            "min" | "m" => 1.0 / 60.0,
            "h" => 1.0 / 3600.0,
            _ => {
                return Err(format!("throughput {v:?} needs a rate unit: /s, /min or /h"));
            }
        },
        Metric::Memory => match unit {
            "B" | "" => 1.0,
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            _ => {
                return Err(format!("memory {v:?}: unit must be B, KB, MB, GB, KiB, MiB or GiB"));
            }
        },
        Metric::Cpu => match unit {
            "%" => 1.0,
            _ => return Err(format!("cpu {v:?} must be a percentage (100% = one core)")),
        },
    };
    Ok(n * scale)
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks one threshold; a run without completed requests fails every threshold.
pub fn evaluate(t: &Threshold, r: &BenchResult, resources: Option<&ResourceSummary>) -> Verdict {
    let verdict = |passed, actual: String| Verdict { passed, expected: t.text.clone(), actual };
    if r.completed == 0 {
        return verdict(false, "no request completed".to_string());
    }
    let actual = match t.metric {
        Metric::Latency(p) => {
            let l = &r.latency;
            let (name, ms) = match p {
                Percentile::P50 => ("p50", l.p50_ms),
                Percentile::P90 => ("p90", l.p90_ms),
                Percentile::P95 => ("p95", l.p95_ms),
                Percentile::P99 => ("p99", l.p99_ms),
                Percentile::P99_9 => ("p99.9", l.p99_9_ms),
                Percentile::Max => ("max", l.max_ms),
            };
            (ms, format!("{name} = {ms:.3}ms"))
        }
        Metric::ErrorRate => (r.error_rate, format!("error_rate = {:.4}%", r.error_rate * 100.0)),
        Metric::Throughput => (r.throughput_per_sec, format!("throughput = {:.1}/s", r.throughput_per_sec)),
        Metric::Memory | Metric::Cpu => {
            let Some(worst) = resources.and_then(|s| worst_container(s, t.metric)) else {
                return verdict(false, "no container resource samples".to_string());
            };
            worst
        }
    };
    verdict(t.op.holds(actual.0, t.value), actual.1)
}

fn worst_container(s: &ResourceSummary, metric: Metric) -> Option<(f64, String)> {
    let pick = |c: &super::resources::ContainerResources| match metric {
        Metric::Memory => c.peak_memory_bytes as f64,
        _ => c.mean_cpu_percent,
    };
    let c = s.containers.iter().filter(|c| c.samples > 0).max_by(|a, b| pick(a).total_cmp(&pick(b)))?;
    let text = match metric {
        Metric::Memory => {
            format!("memory = {:.1}MiB peak ({})", c.peak_memory_bytes as f64 / (1024.0 * 1024.0), c.name)
        }
        _ => format!("cpu = {:.1}% mean ({})", c.mean_cpu_percent, c.name),
    };
    Some((pick(c), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::resources::ContainerResources;
    use crate::bench::result::bench_result;
    use crate::bench::stats::Interval;

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<Threshold>().unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_forms() {
        let p95 = t("p95 < 100ms");
        assert_eq!((p95.metric, p95.op, p95.value), (Metric::Latency(Percentile::P95), Op::Lt, 100.0));
        assert_eq!(t("p99.9 <= 1s").value, 1000.0);
        assert_eq!(t("p99.9<=1s").op, Op::Le);
        assert!((t("error_rate < 0.1%").value - 0.001).abs() < 1e-12);
        assert!((t("throughput > 1000/min").value - 1000.0 / 60.0).abs() < 1e-9);
        assert_eq!(t("throughput >= 50/s").value, 50.0);
        assert_eq!(t("memory < 1GiB").value, 1073741824.0);
        assert_eq!(t("cpu < 50%").value, 50.0);
        assert_eq!(t("max < 250us").value, 0.25);
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        assert!(err("p95 100ms").contains("no comparison"));
        assert!(err("p96 < 100ms").contains("unknown metric \"p96\""));
        assert!(err("p95 < 100").contains("needs a unit"));
        assert!(err("p95 < fast").contains("does not start with a number"));
        assert!(err("p95 = 1s").contains("use <, <=, > or >="));
        assert!(err("error_rate < 5").contains("percentage"));
        assert!(err("throughput > 10").contains("/s, /min or /h"));
        assert!(err("memory < 1TB").contains("unit must be"));
        assert!(err("cpu < 0.5").contains("percentage"));
    }

    fn result(latencies_ms: &[u64], failures: u64) -> BenchResult {
        let mut i = Interval::default();
        for &ms in latencies_ms {
            i.answered(200, ms * 1000);
        }
        for _ in 0..failures {
            i.failed(crate::bench::stats::ErrorKind::Connect);
        }
        bench_result("closed", None, 2.0, &i, 0, Vec::new())
    }

    #[test]
    fn evaluates_pass_and_fail() {
        let r = result(&[10, 20, 30, 40], 0);
        let v = evaluate(&t("p50 < 100ms"), &r, None);
        assert!(v.passed, "{v:?}");
        assert_eq!(v.expected, "p50 < 100ms");
        // HDR reports the top of the value's bucket (3 significant digits): 20.015ms.
        assert!(v.actual.starts_with("p50 = 20.0"), "{}", v.actual);
        assert!(!evaluate(&t("max < 30ms"), &r, None).passed);
        assert!(evaluate(&t("throughput >= 2/s"), &r, None).passed);
        assert!(!evaluate(&t("throughput > 2/s"), &r, None).passed);
        let with_errors = result(&[10; 99], 1);
        assert!(evaluate(&t("error_rate <= 1%"), &with_errors, None).passed);
        assert!(!evaluate(&t("error_rate < 1%"), &with_errors, None).passed);
    }

    #[test]
    fn zero_completed_requests_fail_every_threshold() {
        let r = result(&[], 5);
        for s in ["p95 < 1s", "error_rate < 100%", "throughput >= 0/s", "cpu < 100%"] {
            let v = evaluate(&t(s), &r, None);
            assert!(!v.passed, "{s}");
            assert_eq!(v.actual, "no request completed");
        }
    }

    #[test]
    fn resource_thresholds_use_the_worst_container() {
        let r = result(&[10], 0);
        let containers = |mem: [u64; 2]| ResourceSummary {
            containers: mem
                .iter()
                .enumerate()
                .map(|(i, &m)| ContainerResources {
                    name: format!("c{i}"),
                    samples: 3,
                    peak_memory_bytes: m,
                    mean_cpu_percent: 10.0 * (i + 1) as f64,
                    peak_cpu_percent: 50.0,
                    memory_slope_bytes_per_min: 0.0,
                })
                .collect(),
        };
        let s = containers([100 << 20, 300 << 20]);
        let v = evaluate(&t("memory < 256MiB"), &r, Some(&s));
        assert!(!v.passed);
        assert_eq!(v.actual, "memory = 300.0MiB peak (c1)");
        assert!(evaluate(&t("cpu < 25%"), &r, Some(&s)).passed);
        assert!(!evaluate(&t("memory < 1GiB"), &r, None).passed);
    }
}
