//! The load generator measured against wrk on this machine, as ratios from the same run:
//! throughput and CPU per request (closed model), RSS over many requests, open-model rate
//! accuracy and a server stall. Run: `cargo bench -p xtask --bench load_vs_wrk` (see README.md).

#[allow(dead_code)]
#[path = "../xtask/src/bench/mod.rs"]
mod bench;
// `cargo test --all-targets` builds this file with cfg(test), where `bench` already has it.
#[cfg(test)]
use bench::loopback;
#[cfg(not(test))]
#[allow(dead_code)]
#[path = "../xtask/src/bench/loopback.rs"]
mod loopback;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

/// What the generator child process is asked to run.
#[derive(Serialize, Deserialize)]
struct ChildJob {
    url: String,
    connections: usize,
    rate: Option<f64>,
    duration_secs: Option<f64>,
    requests: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ChildReport {
    result: bench::BenchResult,
    vm_hwm_kib: u64,
    vm_rss_kib: u64,
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let job: ChildJob = serde_json::from_str(args.get(i + 1).context("--child needs a job")?)?;
        return run_child(job);
    }
    if let Err(missing) = require_tools() {
        // A setup hint, not a failure to debug: no backtrace.
        eprintln!("{missing}");
        std::process::exit(1);
    }
    let secs = env_secs("LOAD_BENCH_SECS", 5);
    let rounds = env_secs("LOAD_BENCH_ROUNDS", 3);
    let connections = env_secs("LOAD_BENCH_CONNECTIONS", 50) as usize;
    let rss_big = std::env::var("LOAD_BENCH_RSS_REQUESTS").ok().and_then(|v| v.parse().ok());
    let rss_budget = env_secs("LOAD_BENCH_RSS_SECS", 240);
    let parts = std::env::var("LOAD_BENCH_PARTS").unwrap_or_else(|_| "closed,memory,open,stall".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);

    let dir = std::env::temp_dir().join(format!("load-bench-{}", std::process::id()));
    let mut nginx = Nginx::start(&dir)?;
    let url = format!("http://127.0.0.1:{}/index.html", nginx.port);
    std::thread::sleep(Duration::from_millis(300));
    let sh = Shell::new()?;

    if part("closed") {
        closed_rounds(&sh, &url, connections, secs, rounds)?;
    }
    if part("memory") {
        memory(&sh, &url, connections, rss_big, rss_budget)?;
    }
    if part("open") {
        open_model(&sh, &url, connections, secs)?;
    }
    nginx.stop();
    if part("stall") {
        stall(&sh)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// wrk and our generator in turns, same connections and duration, both on core 1.
fn closed_rounds(sh: &Shell, url: &str, connections: usize, secs: u64, rounds: u64) -> anyhow::Result<()> {
    println!(
        "## closed model, {connections} connections, {secs}s, {rounds} interleaved rounds (generator on core 1, nginx on core 0)\n"
    );
    println!("| round | wrk req/s | ours req/s | wrk CPU µs/req | ours CPU µs/req |");
    println!("|---|---|---|---|---|");
    let (mut wrk_total, mut ours_total) = (Totals::default(), Totals::default());
    for round in 1..=rounds {
        // Alternate who goes first, so neither tool always gets the quieter moment.
        let (w, o) = if round % 2 == 1 {
            let w = run_wrk(sh, url, connections, secs)?;
            (w, run_ours(sh, &closed_job(url, connections, secs))?.0)
        } else {
            let o = run_ours(sh, &closed_job(url, connections, secs))?.0;
            (run_wrk(sh, url, connections, secs)?, o)
        };
        println!(
            "| {round} | {:.0} | {:.0} | {:.2} | {:.2} |",
            w.per_sec(),
            o.per_sec(),
            w.cpu_us_per_request(),
            o.cpu_us_per_request()
        );
        wrk_total.add(&w);
        ours_total.add(&o);
    }
    let rate = ours_total.per_sec() / wrk_total.per_sec();
    let cpu = ours_total.cpu_us_per_request() / wrk_total.cpu_us_per_request();
    println!("\n| ratio (all rounds) | ours ÷ wrk | target | verdict |");
    println!("|---|---|---|---|");
    println!("| requests/s | {rate:.3} | ≥ 0.98 | {} |", verdict(rate >= 0.98));
    println!("| generator CPU per request | {cpu:.3} | ≤ 1 (aim 0.8) | {} |", verdict(cpu <= 1.0));
    Ok(())
}

fn closed_job(url: &str, connections: usize, secs: u64) -> ChildJob {
    ChildJob { url: url.to_string(), connections, rate: None, duration_secs: Some(secs as f64), requests: None }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Resident memory after 100 thousand and after `big` requests (default: 10 million, or as many
/// as fit in `budget_secs` at the rate of the first run): nothing may grow per request.
fn memory(sh: &Shell, url: &str, connections: usize, big: Option<u64>, budget_secs: u64) -> anyhow::Result<()> {
    const SMALL: u64 = 100_000;
    const TARGET: u64 = 10_000_000;
    println!("\n## memory over many requests (closed model, {connections} connections)\n");
    let run = |n: u64| -> anyhow::Result<(f64, u64, u64)> {
        let job = ChildJob { url: url.to_string(), connections, rate: None, duration_secs: None, requests: Some(n) };
        let (totals, report) = run_ours(sh, &job)?;
        anyhow::ensure!(report.result.completed == n, "only {} of {n} requests completed", report.result.completed);
        Ok((totals.seconds, report.vm_hwm_kib, report.vm_rss_kib))
    };
    let small = run(SMALL)?;
    let big = big.unwrap_or_else(|| {
        let fits = (SMALL as f64 / small.0 * budget_secs as f64) as u64 / SMALL * SMALL;
        if fits < TARGET {
            println!(
                "(10 million requests would take about {:.0} s at this moment's rate; running {fits}, what fits in \
                 {budget_secs} s; LOAD_BENCH_RSS_REQUESTS=10000000 forces the full count)\n",
                TARGET as f64 * small.0 / SMALL as f64
            );
        }
        fits.clamp(10 * SMALL, TARGET)
    });
    let large = run(big)?;
    println!("| requests | seconds | VmHWM KiB | VmRSS KiB at end |");
    println!("|---|---|---|---|");
    for (n, (secs, hwm, rss)) in [(SMALL, small), (big, large)] {
        println!("| {n} | {secs:.0} | {hwm} | {rss} |");
    }
    let growth = large.1 as f64 - small.1 as f64;
    println!(
        "\npeak RSS growth from {SMALL} to {big} requests: {:.2} MiB (target: within a few MB, checked as ≤ 4 MiB): {}",
        growth / 1024.0,
        verdict(growth <= 4096.0)
    );
    Ok(())
}

/// Open model at 20, 50 and 80 % of a closed run made just before each.
fn open_model(sh: &Shell, url: &str, connections: usize, secs: u64) -> anyhow::Result<()> {
    println!("\n## open model: achieved vs target rate ({secs}s each; target = share of a closed run just before)\n");
    println!("| closed/s | share | target/s | achieved/s | achieved ÷ target | late | unsent | p99 ms | within 1 % |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for share in [0.2, 0.5, 0.8] {
        // The shared cores drift within seconds, so the reference is measured right before.
        let closed = closed_job(url, connections, secs);
        let closed_max = run_ours(sh, &closed)?.0.per_sec();
        let rate = (closed_max * share).round().max(1.0);
        // Twice the closed connection budget, like wrk2's fixed connections.
        let open_job = ChildJob { connections: 2 * connections, rate: Some(rate), ..closed };
        let (_, report) = run_ours(sh, &open_job)?;
        let r = &report.result;
        let achieved = r.completed as f64 / secs as f64;
        println!(
            "| {closed_max:.0} | {share} | {rate:.0} | {achieved:.0} | {:.4} | {} | {} | {:.2} | {} |",
            achieved / rate,
            r.late,
            r.unsent,
            r.latency.p99_ms,
            verdict((achieved / rate - 1.0).abs() <= 0.01)
        );
    }
    Ok(())
}

/// A 1 s server freeze in a 10 s open-model run must show in p99.
fn stall(sh: &Shell) -> anyhow::Result<()> {
    println!("\n## stall: loopback server freezes 1s in the middle of a 10s open-model run at 200/s\n");
    let stalled = loopback::Loopback::start_with(loopback::Behaviour {
        status: 200,
        freeze: Some((Duration::from_secs(5), Duration::from_secs(1))),
    })?;
    let (_, report) = run_ours(
        sh,
        &ChildJob {
            url: stalled.url("/"),
            connections: 1000,
            rate: Some(200.0),
            duration_secs: Some(10.0),
            requests: None,
        },
    )?;
    let l = &report.result.latency;
    println!("| completed | p50 ms | p90 ms | p99 ms | max ms | late | p99 shows the stall (800–1000 ms) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.2} | {:.2} | {:.1} | {:.1} | {} | {} |",
        report.result.completed,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms,
        report.result.late,
        verdict((800.0..=1000.0).contains(&l.p99_ms))
    );
    println!("\n(expected p99 ≈ 900 ms: about 10 % of the requests were due during the freeze)");
    Ok(())
}

/// wrk, nginx and taskset come from Debian; say what to install instead of failing half-way.
fn require_tools() -> anyhow::Result<()> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    let mut missing = Vec::new();
    if !on_path("wrk") {
        missing.push(("wrk", "wrk"));
    }
    if !Path::new(NGINX).is_file() {
        missing.push(("nginx", "nginx-light"));
    }
    if !on_path("taskset") {
        missing.push(("taskset", "util-linux"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = missing.iter().map(|m| m.0).collect();
    let packages: Vec<&str> = missing.iter().map(|m| m.1).collect();
    anyhow::bail!(
        "load_vs_wrk needs {} (not found). Install them, as root:\n\n    apt-get install -y {}\n",
        tools.join(", "),
        packages.join(" ")
    )
}

#[derive(Default)]
struct Totals {
    requests: f64,
    seconds: f64,
    cpu_secs: f64,
}

impl Totals {
    fn per_sec(&self) -> f64 {
        self.requests / self.seconds
    }
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_secs * 1e6 / self.requests
    }
    fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.seconds += o.seconds;
        self.cpu_secs += o.cpu_secs;
    }
}

/// CPU seconds (user + system) of all waited-for children so far.
fn children_cpu() -> anyhow::Result<f64> {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(u.user_time()) + secs(u.system_time()))
}

fn run_wrk(sh: &Shell, url: &str, connections: usize, secs: u64) -> anyhow::Result<Totals> {
    let (c, d) = (connections.to_string(), format!("{secs}s"));
    let before = children_cpu()?;
    let out = cmd!(sh, "taskset -c 1 wrk -t1 -c{c} -d{d} {url}").read()?;
    let cpu_secs = children_cpu()? - before;
    // "  31665 requests in 5.00s, 24.40MB read"
    let line =
        out.lines().find(|l| l.contains(" requests in ")).with_context(|| format!("unexpected wrk output:\n{out}"))?;
    let mut words = line.split_whitespace();
    let requests: f64 = words.next().context("wrk count")?.parse()?;
    let seconds: f64 = words
        .nth(2)
        .and_then(|s| s.trim_end_matches(',').trim_end_matches('s').parse().ok())
        .context("wrk duration")?;
    Ok(Totals { requests, seconds, cpu_secs })
}

fn run_ours(sh: &Shell, job: &ChildJob) -> anyhow::Result<(Totals, ChildReport)> {
    let exe = std::env::current_exe()?;
    let job = serde_json::to_string(job)?;
    let before = children_cpu()?;
    let out = cmd!(sh, "taskset -c 1 {exe} --child {job}").read()?;
    let cpu_secs = children_cpu()? - before;
    let report: ChildReport = serde_json::from_str(&out).context("generator child output")?;
    let totals = Totals { requests: report.result.completed as f64, seconds: report.result.duration_secs, cpu_secs };
    Ok((totals, report))
}

fn run_child(job: ChildJob) -> anyhow::Result<()> {
    let spec = bench::LoadSpec {
        model: match job.rate {
            Some(rate_per_sec) => bench::Model::Open { rate_per_sec, max_connections: job.connections },
            None => bench::Model::Closed { connections: job.connections },
        },
        stop: match job.requests {
            Some(n) => bench::Stop::Requests(n),
            None => bench::Stop::Duration(Duration::from_secs_f64(job.duration_secs.unwrap_or(5.0))),
        },
        scenario: vec![bench::WeightedRequest::get(job.url)],
        timeout: Duration::from_secs(10),
        insecure_tls: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(bench::run(&spec, tokio_util::sync::CancellationToken::new(), |_| {}))?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let report = ChildReport { vm_hwm_kib: kib("VmHWM:"), vm_rss_kib: kib("VmRSS:"), result };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

const NGINX: &str = "/usr/sbin/nginx";

/// nginx from Debian serving one static file on 127.0.0.1, one worker pinned to core 0.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path) -> anyhow::Result<Nginx> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::create_dir_all(dir.join("html"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(dir.join("html/index.html"), "x".repeat(612))?;
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; keepalive_requests 100000000;\n\
             client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
             uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/html; }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = Command::new("taskset")
            .args(["-c", "0", NGINX, "-p"])
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        Ok(Nginx { child, port })
    }

    /// SIGTERM, not SIGKILL: the master must take its worker down with it.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
