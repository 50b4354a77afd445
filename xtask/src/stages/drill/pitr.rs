//! Point-in-time recovery from archived WAL, inside the Postgres container: a base backup, a row written
//! before a recorded time and one after it, then a scratch cluster made from the base backup and
//! recovered to that time through the archive. The row before must be there, the row after must not.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::backup::Target;
use crate::config::PitrDrill;
use crate::run::record::GateRecord;
use crate::stages::StageCx;

const DEFAULT_WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(500);
/// The scratch cluster listens only on a socket in its own directory, on a port the live server does not use.
const SCRATCH_PORT: &str = "5499";
const MARKERS: &str = "rehearsal_pitr_markers";

pub async fn run(
    target: &Target<'_>,
    spec: &PitrDrill,
    cx: &StageCx<'_>,
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<Value> {
    let dir = format!("/tmp/drill-pitr-{}", target.tag);
    let outcome = recover(target, spec, cx, &dir, gates).await;
    // The scratch cluster and its files go whatever happened; the live table of markers too.
    let _ = target.run(&["pg_ctl", "-D", &format!("{dir}/data"), "-m", "immediate", "-w", "stop"]).await;
    let _ = target.run(&["rm", "-rf", &dir]).await;
    let _ = target.psql(target.database, &format!("DROP TABLE IF EXISTS {MARKERS}")).await;
    outcome
}

async fn recover(
    target: &Target<'_>,
    spec: &PitrDrill,
    cx: &StageCx<'_>,
    dir: &str,
    gates: &mut Vec<GateRecord>,
) -> anyhow::Result<Value> {
    let archiving = target.psql(target.database, "SHOW archive_mode").await?;
    anyhow::ensure!(archiving == "on", "the server does not archive WAL (archive_mode is {archiving})");
    let before = format!("before-{}", target.tag);
    let after = format!("after-{}", target.tag);
    target
        .psql(target.database, &format!("CREATE TABLE IF NOT EXISTS {MARKERS} (marker TEXT PRIMARY KEY, written_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"))
        .await?;

    let data = format!("{dir}/data");
    let started = Instant::now();
    target.must("mkdir", &["mkdir", "-p", dir]).await?;
    target.must("pg_basebackup", &["pg_basebackup", "-D", &data, "-X", "stream", "-c", "fast"]).await?;
    let base_ms = started.elapsed().as_millis() as u64;

    target.psql(target.database, &format!("INSERT INTO {MARKERS} (marker) VALUES ('{before}')")).await?;
    pause(Duration::from_millis(1100), cx).await?;
    let point = target
        .psql(
            target.database,
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
        )
        .await?;
    pause(Duration::from_millis(1100), cx).await?;
    target.psql(target.database, &format!("INSERT INTO {MARKERS} (marker) VALUES ('{after}')")).await?;
    let segment = target.psql(target.database, "SELECT pg_walfile_name(pg_switch_wal())").await?;
    wait_archived(target, &segment, cx).await?;

    let recovery_started = Instant::now();
    let settings = format!(
        "restore_command = 'cp {archive}/%f \"%p\"'\nrecovery_target_time = '{point}'\nrecovery_target_action = 'promote'\n",
        archive = spec.archive
    );
    let script = format!(
        "set -e\nprintf '%s' \"$1\" >> {data}/postgresql.auto.conf\ntouch {data}/recovery.signal\n\
         pg_ctl -D {data} -l {dir}/server.log -w -t 5 -o \"-c config_file={config} -c port={SCRATCH_PORT} \
         -c listen_addresses= -c unix_socket_directories={dir} -c archive_mode=off -c shared_buffers=16MB\" start || true\n",
        config = spec.config_file
    );
    target.must("pg_ctl start", &["bash", "-c", &script, "pitr", &settings]).await?;
    let deadline = Instant::now() + spec.wait.map_or(DEFAULT_WAIT, |d| d.0);
    let promoted = wait_promoted(target, dir, deadline, cx).await;
    let recovery = recovery_started.elapsed();
    if let Err(e) = promoted {
        let log =
            target.run(&["tail", "-n", "8", &format!("{dir}/server.log")]).await.map(|o| o.stdout).unwrap_or_default();
        gates.push(GateRecord::judged(
            "recovered to the point in time",
            "pitr",
            false,
            format!("a cluster recovered to {point}"),
            format!("{e}; server log:\n{log}"),
        ));
        anyhow::bail!("recovery did not finish: {e}");
    }
    let found = scratch_psql(target, dir, &format!("SELECT marker FROM {MARKERS} ORDER BY marker")).await?;
    let markers: Vec<&str> = found.lines().collect();
    let passed = markers.contains(&before.as_str()) && !markers.contains(&after.as_str());
    let expected =
        format!("recovered to {point}: the row written before it ({before}) and not the one after ({after})");
    let actual = format!(
        "rows present after recovery: {} (recovered in {:.1}s)",
        if markers.is_empty() { "none".into() } else { markers.join(", ") },
        recovery.as_secs_f64()
    );
    let mut gate = GateRecord::judged("recovered to the point in time", "pitr", passed, expected, actual);
    gate.duration_ms = recovery.as_millis() as u64;
    gates.push(gate);
    Ok(json!({
        "target_time": point,
        "base_backup_ms": base_ms,
        "time_to_restore_ms": recovery.as_millis() as u64,
        "archived_segment": segment,
        "rows_after_recovery": markers,
    }))
}

async fn pause(how_long: Duration, cx: &StageCx<'_>) -> anyhow::Result<()> {
    tokio::select! {
        () = tokio::time::sleep(how_long) => Ok(()),
        () = cx.cancel.cancelled() => anyhow::bail!("interrupted"),
    }
}

/// The archiver copies finished segments in the background: the switched one must be in the archive.
async fn wait_archived(target: &Target<'_>, segment: &str, cx: &StageCx<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = target.psql(target.database, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").await?;
        if last.as_str() >= segment {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "WAL segment {segment} was not archived within 60s (last archived: {last:?})"
        );
        pause(POLL, cx).await?;
    }
}

async fn wait_promoted(target: &Target<'_>, dir: &str, deadline: Instant, cx: &StageCx<'_>) -> Result<(), String> {
    loop {
        let last = match scratch_psql(target, dir, "SELECT pg_is_in_recovery()").await {
            Ok(answer) if answer == "f" => return Ok(()),
            Ok(answer) => format!("still in recovery ({answer})"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        pause(POLL, cx).await.map_err(|e| e.to_string())?;
    }
}

async fn scratch_psql(target: &Target<'_>, dir: &str, sql: &str) -> anyhow::Result<String> {
    let out = target
        .must(
            "psql (scratch)",
            &["psql", "-X", "-q", "-At", "-h", dir, "-p", SCRATCH_PORT, "-d", target.database, "-c", sql],
        )
        .await?;
    Ok(out.trim().to_string())
}
