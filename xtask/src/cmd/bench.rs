//! `cargo xtask bench`: the load generator on its own, against one URL, with thresholds.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// `name: value`, repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long)]
    body: Option<String>,
    /// Closed model: connections sending back to back.
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// Open model: arrival rate per second (uses --max-connections instead of -c).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    /// Run length, e.g. `10s`.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Stop after this many requests instead of after --duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    #[arg(long)]
    insecure: bool,
    /// e.g. `p95 < 100ms`, repeatable.
    #[arg(long = "threshold")]
    thresholds: Vec<crate::bench::Threshold>,
    /// Containers to sample through the Docker engine while the load runs.
    #[arg(long = "container")]
    containers: Vec<String>,
    /// Write the result as JSON here.
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
    /// Write latency.svg and throughput.svg into this directory.
    #[arg(long)]
    svg_dir: Option<std::path::PathBuf>,
}

fn load_spec(a: &BenchArgs) -> anyhow::Result<crate::bench::LoadSpec> {
    let headers = a
        .headers
        .iter()
        .map(|h| {
            let (n, v) = h.split_once(':').with_context(|| format!("header {h:?} needs `name: value`"))?;
            Ok((n.trim().to_string(), v.trim().to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(crate::bench::LoadSpec {
        model: match a.rate {
            Some(rate_per_sec) => crate::bench::Model::Open { rate_per_sec, max_connections: a.max_connections },
            None => crate::bench::Model::Closed { connections: a.connections },
        },
        stop: match a.requests {
            Some(n) => crate::bench::Stop::Requests(n),
            None => crate::bench::Stop::Duration(a.duration),
        },
        scenario: vec![crate::bench::WeightedRequest {
            method: a.method.clone(),
            headers,
            body: a.body.clone(),
            ..crate::bench::WeightedRequest::get(a.url.clone())
        }],
        timeout: a.timeout,
        insecure_tls: a.insecure,
    })
}

/// Runs the load; `quiet` prints only the JSON result on stdout (for scripts and benches).
pub async fn run(a: &BenchArgs, quiet: bool) -> ExitCode {
    match run_inner(a, quiet).await {
        Ok(true) => ExitCode::from(super::EXIT_PASSED),
        Ok(false) => ExitCode::from(super::EXIT_GATE_FAILED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(super::EXIT_INVALID)
        }
    }
}

async fn run_inner(a: &BenchArgs, quiet: bool) -> anyhow::Result<bool> {
    let spec = load_spec(&a)?;
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let sampler =
        if a.containers.is_empty() { None } else { Some(crate::bench::ResourceSampler::start(&a.containers).await?) };
    let result = crate::bench::run(&spec, cancel, |s| {
        if !quiet {
            eprintln!(
                "{:>4}s {:>9.0} req/s  p50 {:>8.3}ms  p99 {:>8.3}ms  errors {}",
                s.second + 1,
                s.throughput_per_sec,
                s.p50_ms,
                s.p99_ms,
                s.errors
            );
        }
    })
    .await?;
    let resources = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = &a.out {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &a.svg_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latency.svg"), crate::bench::latency_svg(&result))?;
        std::fs::write(dir.join("throughput.svg"), crate::bench::throughput_svg(&result))?;
    }
    if quiet {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        let l = &result.latency;
        println!(
            "{} requests, {} answered in {:.2}s: {:.1} req/s, errors {}, late (>{:?}) {}, unsent {}",
            result.requests,
            result.completed,
            result.duration_secs,
            result.throughput_per_sec,
            result.errors.describe(),
            crate::bench::LATE_SLACK,
            result.late,
            result.unsent
        );
        println!(
            "latency ms: p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.p99_9_ms, l.max_ms
        );
        if let Some(r) = &resources {
            for c in &r.containers {
                println!(
                    "{}: peak {:.1} MiB, cpu mean {:.1}% peak {:.1}%, memory slope {:.0} B/min",
                    c.name,
                    c.peak_memory_bytes as f64 / 1048576.0,
                    c.mean_cpu_percent,
                    c.peak_cpu_percent,
                    c.memory_slope_bytes_per_min
                );
            }
        }
    }
    let mut failed = 0;
    for t in &a.thresholds {
        let v = crate::bench::evaluate(t, &result, resources.as_ref());
        eprintln!("{} {}: {}", if v.passed { "PASS" } else { "FAIL" }, v.expected, v.actual);
        failed += usize::from(!v.passed);
    }
    Ok(failed == 0)
}
