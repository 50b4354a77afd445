//! Container resource use while load runs, from the Docker engine's stats stream: peak memory,
//! CPU % and the memory slope over the run (a leak signal).

use std::time::Instant;

use anyhow::Context;
use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One stats reading of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceSample {
    /// Seconds since sampling started.
    pub at_secs: f64,
    pub memory_bytes: u64,
    /// `None` for the first reading, which has no previous CPU counters to compare with.
    pub cpu_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerResources {
    pub name: String,
    pub samples: usize,
    pub peak_memory_bytes: u64,
    /// 100 % = one core busy.
    pub mean_cpu_percent: f64,
    pub peak_cpu_percent: f64,
    /// Least-squares slope of memory over time; a steady rise under steady load hints at a leak.
    pub memory_slope_bytes_per_min: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSummary {
    pub containers: Vec<ContainerResources>,
}

/// Memory as `docker stats` shows it: usage minus page cache (cgroup v1 `cache`, v2 `inactive_file`).
pub fn used_memory(s: &ContainerStatsResponse) -> Option<u64> {
    let m = s.memory_stats.as_ref()?;
    let usage = m.usage?;
    let cache = m.stats.as_ref().and_then(|st| {
        st.get("total_inactive_file").or_else(|| st.get("inactive_file")).or_else(|| st.get("cache")).copied()
    });
    Some(usage.saturating_sub(cache.unwrap_or(0)))
}

/// CPU % between two readings (100 % = one core), as `docker stats` computes it.
pub fn cpu_percent(prev: &ContainerStatsResponse, cur: &ContainerStatsResponse) -> Option<f64> {
    let total = |s: &ContainerStatsResponse| s.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage;
    let system = |s: &ContainerStatsResponse| s.cpu_stats.as_ref()?.system_cpu_usage;
    let cpu_delta = total(cur)?.checked_sub(total(prev)?)? as f64;
    let system_delta = system(cur)?.checked_sub(system(prev)?)? as f64;
    if system_delta <= 0.0 {
        return None;
    }
    let stats = cur.cpu_stats.as_ref()?;
    let cpus = stats
        .online_cpus
        .map(f64::from)
        .or_else(|| stats.cpu_usage.as_ref()?.percpu_usage.as_ref().map(|v| v.len() as f64))?;
    Some(cpu_delta / system_delta * cpus * 100.0)
}

/// Least-squares slope of `(x, y)` points; 0 for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

pub fn summarize(name: &str, samples: &[ResourceSample]) -> ContainerResources {
    let cpu: Vec<f64> = samples.iter().filter_map(|s| s.cpu_percent).collect();
    let mem: Vec<(f64, f64)> = samples.iter().map(|s| (s.at_secs / 60.0, s.memory_bytes as f64)).collect();
    ContainerResources {
        name: name.to_string(),
        samples: samples.len(),
        peak_memory_bytes: samples.iter().map(|s| s.memory_bytes).max().unwrap_or(0),
        mean_cpu_percent: if cpu.is_empty() { 0.0 } else { cpu.iter().sum::<f64>() / cpu.len() as f64 },
        peak_cpu_percent: cpu.iter().copied().fold(0.0, f64::max),
        memory_slope_bytes_per_min: slope(&mem),
    }
}

/// Samples containers in the background until `finish` is called.
pub struct ResourceSampler {
    stop: CancellationToken,
    tasks: Vec<(String, JoinHandle<Vec<ResourceSample>>)>,
}

impl ResourceSampler {
    /// Connects to the local engine (negotiating the API version) and starts one stats stream per container.
    pub async fn start(containers: &[String]) -> anyhow::Result<ResourceSampler> {
        let docker = Docker::connect_with_local_defaults()
            .context("cannot reach the Docker engine")?
            .negotiate_version()
            .await
            .context("cannot negotiate the Docker API version")?;
        let stop = CancellationToken::new();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for name in containers {
            docker.inspect_container(name, None).await.with_context(|| format!("container {name:?} to sample"))?;
            let task = tokio::spawn(sample_container(docker.clone(), name.clone(), started, stop.clone()));
            tasks.push((name.clone(), task));
        }
        Ok(ResourceSampler { stop, tasks })
    }

    pub async fn finish(self) -> ResourceSummary {
        self.stop.cancel();
        let mut containers = Vec::new();
        for (name, task) in self.tasks {
            let samples = task.await.unwrap_or_default();
            containers.push(summarize(&name, &samples));
        }
        ResourceSummary { containers }
    }
}

async fn sample_container(
    docker: Docker,
    name: String,
    started: Instant,
    stop: CancellationToken,
) -> Vec<ResourceSample> {
    let options = StatsOptionsBuilder::new().stream(true).one_shot(false).build();
    let mut stream = docker.stats(&name, Some(options));
    let mut samples = Vec::new();
    let mut prev: Option<ContainerStatsResponse> = None;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = stream.next() => next,
        };
        let Some(Ok(stats)) = next else { break };
        if let Some(memory_bytes) = used_memory(&stats) {
            samples.push(ResourceSample {
                at_secs: started.elapsed().as_secs_f64(),
                memory_bytes,
                cpu_percent: prev.as_ref().and_then(|p| cpu_percent(p, &stats)),
            });
        }
        prev = Some(stats);
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};
    use std::collections::HashMap;

    fn stats(total: u64, system: u64, usage: u64, cache: u64) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage { total_usage: Some(total), ..Default::default() }),
                system_cpu_usage: Some(system),
                online_cpus: Some(2),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(usage),
                stats: Some(HashMap::from([("total_inactive_file".to_string(), cache)])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_and_memory_follow_docker_stats_formulas() {
        let a = stats(1_000, 10_000, 500, 100);
        let b = stats(3_000, 20_000, 700, 100);
        assert_eq!(used_memory(&b), Some(600));
        assert_eq!(cpu_percent(&a, &b), Some(40.0));
        assert_eq!(cpu_percent(&b, &a), None);
    }

    #[test]
    fn slope_of_a_line_and_of_too_few_points() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 5.0)]), 0.0);
    }

    #[test]
    fn summary_reports_peak_mean_and_slope_per_minute() {
        let s = |at_secs, memory_bytes, cpu_percent| ResourceSample { at_secs, memory_bytes, cpu_percent };
        let samples = [s(0.0, 1000, None), s(30.0, 1500, Some(10.0)), s(60.0, 2000, Some(30.0))];
        let c = summarize("web", &samples);
        assert_eq!((c.samples, c.peak_memory_bytes), (3, 2000));
        assert_eq!((c.mean_cpu_percent, c.peak_cpu_percent), (20.0, 30.0));
        assert!((c.memory_slope_bytes_per_min - 1000.0).abs() < 1e-6);
        assert_eq!(summarize("none", &[]).peak_memory_bytes, 0);
    }
}

/// Samples a real container: a `sleep` rootfs imported from the host's own binaries
/// (nothing can be pulled here). Fails under `CI=true` when Docker is missing.
#[cfg(test)]
mod docker_tests {
    use super::*;
    use xshell::{Shell, cmd};

    struct Cleanup {
        sh: Shell,
        container: String,
        image: String,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let (c, i) = (&self.container, &self.image);
            let _ = cmd!(self.sh, "docker rm -f {c}").quiet().ignore_stdout().ignore_stderr().run();
            let _ = cmd!(self.sh, "docker rmi {i}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }

    #[tokio::test]
    async fn samples_a_real_container() {
        let sh = Shell::new().unwrap();
        if cmd!(sh, "docker version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "Docker is required when CI=true");
            eprintln!("note: Docker not reachable; skipping samples_a_real_container");
            return;
        }
        let id = std::process::id();
        let tmp = std::env::temp_dir().join(format!("xtask-bench-rootfs-{id}.tar"));
        let guard = Cleanup {
            sh: Shell::new().unwrap(),
            container: format!("xtask-bench-res-{id}"),
            image: format!("xtask-bench-sleep:{id}"),
        };
        let (container, image) = (&guard.container, &guard.image);
        // `-h` stores the files behind Debian's /lib64 -> usr/lib64 style links.
        cmd!(sh, "tar -chf {tmp} -C / usr/bin/sleep lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2")
            .quiet()
            .run()
            .unwrap();
        cmd!(sh, "docker import {tmp} {image}").quiet().ignore_stdout().run().unwrap();
        let _ = std::fs::remove_file(&tmp);
        cmd!(sh, "docker run -d --name {container} {image} /usr/bin/sleep 60").quiet().ignore_stdout().run().unwrap();

        let sampler = ResourceSampler::start(std::slice::from_ref(container)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        let summary = sampler.finish().await;
        let c = &summary.containers[0];
        assert_eq!(&c.name, container);
        assert!(c.samples >= 2, "{c:?}");
        assert!(c.peak_memory_bytes > 0 && c.peak_memory_bytes < 64 << 20, "{c:?}");
        assert!(c.mean_cpu_percent < 50.0, "{c:?}");

        let missing = ResourceSampler::start(&["xtask-bench-no-such-container".to_string()]).await;
        let err = format!("{:#}", missing.err().expect("unknown container is an error"));
        assert!(err.contains("xtask-bench-no-such-container"), "{err}");
    }
}
