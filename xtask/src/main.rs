//! `cargo xtask`: deployment rehearsal driven by pipeline.yaml. Parsing here, the work in `cmd/`.

mod base_image;
mod bench;
mod cmd;
mod config;
mod docker;
mod gates;
mod git;
mod helm;
mod plan;
mod process;
mod redact;
mod report;
mod run;
mod stages;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::PipelineArgs;

/// Rehearse a deployment: build, bring up, migrate, check, measure, drill, report.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Print only errors and the final summary.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Print every line of stage output.
    #[arg(long, short, global = true)]
    verbose: bool,
    /// Print the run record (or plan) as JSON on stdout; progress goes to stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline (exit 0 passed, 1 a gate failed, 2 invalid input, 3 environment locked, 130 interrupted).
    Deploy(cmd::deploy::DeployArgs),
    /// Run one drill stage with the stages it needs and the cleanup stages (`--list` names them).
    Drill(cmd::drill::DrillArgs),
    /// Load-test one URL with the pipeline's load generator (closed or open model).
    Bench(cmd::bench::BenchArgs),
    /// Show the resolved stages and gates with their targets; runs nothing.
    Plan(cmd::plan::SelectArgs),
    /// Check pipeline.yaml and exit 0 when it is valid.
    Validate,
    /// Re-render the reports of a stored run (default: the latest).
    Report {
        /// A run id, or a run directory.
        run: Option<String>,
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Set up what the tests need (base image, helm stand-in), then run `cargo test --workspace`.
    Test(cmd::test::TestArgs),
    /// Clear the lock a dead run left on an environment (`--env`, default local); refuses while its run lives.
    Unlock,
    /// Regenerate pipeline.schema.json.
    Schema {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away (`| head`)
    // instead of panicking on a failed write.
    // SAFETY: set before any thread starts; SIG_DFL installs no handler code.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    // Every TLS client here (reqwest, tungstenite, kube, the load generator) uses rustls with ring:
    // one process-wide provider, installed before any of them is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { cmd::EXIT_INVALID } else { cmd::EXIT_PASSED });
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match &cli.command {
        Command::Deploy(args) => {
            let out = cmd::deploy::Output { json: cli.json, quiet: cli.quiet, verbose: cli.verbose };
            runtime.block_on(cmd::deploy::run(&cli.pipeline, args, &out))
        }
        Command::Drill(args) => {
            let out = cmd::deploy::Output { json: cli.json, quiet: cli.quiet, verbose: cli.verbose };
            runtime.block_on(cmd::drill::run(&cli.pipeline, args, &out))
        }
        Command::Bench(args) => runtime.block_on(cmd::bench::run(args, cli.quiet)),
        Command::Plan(select) => cmd::plan::run(&cli.pipeline, select, cli.json),
        Command::Validate => cmd::validate::run(&cli.pipeline),
        Command::Report { run, templates } => cmd::report::run(run.as_deref(), templates.as_deref()),
        Command::Test(args) => cmd::test::run(args),
        Command::Unlock => cmd::unlock::run(&cli.pipeline),
        Command::Schema { out } => cmd::schema::run(out.as_deref()),
    }
}
