//! `control-plane`: the reference service the rehearsal pipeline deploys (serve, migrate, version, healthcheck).

mod breaker;
mod cache;
mod config;
mod db;
mod discovery;
mod execute;
mod http;
mod metrics;
mod migrations;
mod net;
mod ratelimit;
mod readiness;
mod redact;
mod state;
mod tls;

use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::state::AppState;

const USAGE: &str =
    "usage: control-plane [serve|migrate|version|healthcheck]  (configuration via environment variables)";

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if command == "version" || command == "--version" {
        println!("{}", config::default_version_or_env());
        return ExitCode::SUCCESS;
    }
    if command == "help" || command == "--help" || command == "-h" {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if !["serve", "migrate", "healthcheck"].contains(&command.as_str()) {
        eprintln!("control-plane: unknown command {command:?}\n{USAGE}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("control-plane: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command.as_str() {
            "serve" => serve(config).await,
            "migrate" => migrate(&config).await,
            "healthcheck" => healthcheck(&config).await,
            other => bail!("unknown command {other:?}\n{USAGE}"),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "control-plane {command} failed");
            // Also in plain text on stderr, for the operator or pipeline step that ran the command.
            eprintln!("control-plane {command}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    // Postgres NOTICEs arrive as info logs from tokio_postgres and are noise for operators.
    let directives = format!("{level},tokio_postgres=warn");
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).init();
}

async fn migrate(config: &Config) -> Result<()> {
    let (mut client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(&config.database_url, tokio_postgres::NoTls),
    )
    .await
    .context("connecting to Postgres timed out")?
    .with_context(|| format!("connecting to Postgres at {}", redact::redact_url(&config.database_url)))?;
    let connection = tokio::spawn(connection);
    let applied = migrations::migrate(&mut client).await;
    drop(client);
    let _ = connection.await;
    let applied = applied?;
    tracing::info!(applied = ?applied, count = applied.len(), "migrations complete");
    // One plain line for the operator or pipeline step that ran it: how much was done.
    let version = migrations::highest_embedded();
    match applied.is_empty() {
        true => eprintln!("control-plane migrate: 0 applied, nothing to do; schema at version {version}"),
        false => eprintln!(
            "control-plane migrate: {} applied ({}); schema at version {version}",
            applied.len(),
            applied.join(", ")
        ),
    }
    Ok(())
}

async fn healthcheck(config: &Config) -> Result<()> {
    let url = format!("http://127.0.0.1:{}/health/live", config.bind_addr.port());
    let client = crate::net::client(Duration::from_secs(3))?;
    let status = client.get(&url).send().await.with_context(|| format!("GET {url}"))?.status();
    if !status.is_success() {
        bail!("GET {url} answered {status}");
    }
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let shown = serde_json::to_string(&config.redacted()).unwrap_or_default();
    tracing::info!(config = %shown, "starting control-plane");
    let config = Arc::new(config);
    // Both files are read first: a bad certificate stops the start, not the first client.
    let tls_config = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let state = AppState {
        pool: db::pool(&config.database_url, config.db_pool_size)?,
        cache: cache::Cache::new(&config.redis_url)?,
        metrics: metrics::Metrics::new()?,
        http: crate::net::client(Duration::from_millis(800))?,
        limiter: (config.rate_limit_per_sec > 0)
            .then(|| Arc::new(Mutex::new(ratelimit::TokenBucket::new(config.rate_limit_per_sec, Instant::now())))),
        config: config.clone(),
    };
    tokio::spawn(check_schema(state.pool.clone()));
    tokio::spawn(count_patterns(state.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let registration = (!config.etcd_endpoints.is_empty()).then(|| {
        let value = json!({
            "address": format!("{}:{}", config.instance_id, config.bind_addr.port()),
            "version": config.app_version,
            "instance": config.instance_id,
        });
        let mut reg = discovery::Registration::new(
            config.etcd_endpoints.clone(),
            &config.service_name,
            &config.instance_id,
            value,
        );
        reg.credentials = config.etcd_username.clone().zip(config.etcd_password.clone());
        tokio::spawn(discovery::run(reg, shutdown_rx.clone()))
    });

    let app = http::router(state);
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("binding {}", config.bind_addr))?;
    let https = match tls_config {
        Some(tls_config) => {
            let tcp = tokio::net::TcpListener::bind(config.tls_bind_addr)
                .await
                .with_context(|| format!("binding {} (TLS_BIND_ADDR)", config.tls_bind_addr))?;
            tracing::info!(addr = %config.tls_bind_addr, "listening for HTTPS");
            let server = axum::serve(tls::TlsListener::new(tcp, tls_config)?, app.clone())
                .with_graceful_shutdown(stopped(shutdown_rx.clone()));
            Some(tokio::spawn(server.into_future()))
        }
        None => None,
    };
    tracing::info!(addr = %config.bind_addr, version = %config.app_version, "listening");
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received, draining connections");
        let _ = shutdown_tx.send(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(stopped(shutdown_rx)).await.context("HTTP server failed")?;
    if let Some(server) = https {
        server.await.context("HTTPS server task")?.context("HTTPS server failed")?;
    }

    if let Some(task) = registration {
        // Deregistration is best effort: a dead etcd must not hold up the shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// So `control_plane_patterns_total` is meaningful before the first `/api/v1/patterns` call.
async fn count_patterns(state: AppState) {
    if let Ok(Ok(patterns)) = tokio::time::timeout(Duration::from_secs(5), db::patterns(&state.pool)).await {
        state.metrics.patterns_total.set(patterns.len() as i64);
    }
}

/// A binary older than the database (e.g. after a rollback) still starts, but says so.
async fn check_schema(pool: deadpool_postgres::Pool) {
    let embedded = migrations::highest_embedded();
    match tokio::time::timeout(Duration::from_secs(5), db::applied_versions(&pool)).await {
        Ok(Ok(applied)) => match applied.last() {
            Some(&latest) if latest > embedded => tracing::warn!(
                database = latest,
                binary = embedded,
                "database schema is ahead of this binary's migrations (rolled-back release?)"
            ),
            None => tracing::warn!(binary = embedded, "no migrations applied yet: run `control-plane migrate`"),
            Some(&latest) => tracing::info!(database = latest, binary = embedded, "schema version checked"),
        },
        _ => tracing::warn!("could not read the schema version at start (Postgres unavailable?)"),
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
