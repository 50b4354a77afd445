//! The Docker engine connection, negotiated down to the engine's API version (this machine: 1.41).

use bollard::Docker;

pub async fn connect() -> anyhow::Result<Docker> {
    let docker =
        Docker::connect_with_local_defaults().map_err(|e| anyhow::anyhow!("cannot reach the Docker engine: {e}"))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| anyhow::anyhow!("the Docker engine does not answer (is the daemon running?): {e}"))
}

/// The containers of a compose project, as (service, container id), by compose's labels.
pub async fn project_containers(docker: &Docker, project: &str) -> anyhow::Result<Vec<(String, String)>> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let filters = std::collections::HashMap::from([("label", vec![format!("com.docker.compose.project={project}")])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let containers = docker.list_containers(Some(options)).await?;
    let mut found: Vec<(String, String)> = containers
        .into_iter()
        .filter_map(|c| {
            let service = c.labels.as_ref()?.get("com.docker.compose.service")?.clone();
            Some((service, c.id?))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The last `lines` lines a container wrote (stdout and stderr).
pub async fn tail_logs(docker: &Docker, id: &str, lines: usize) -> String {
    use bollard::query_parameters::LogsOptionsBuilder;
    use futures::StreamExt;
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build();
    let chunks: Vec<String> =
        docker.logs(id, Some(options)).filter_map(|c| async move { c.ok().map(|c| c.to_string()) }).collect().await;
    crate::redact::redact(chunks.concat().trim_end()).into_owned()
}

/// What a command run inside a container printed, and how it exited.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (no shell unless it is one) inside a running container as `user`, waiting for it to end.
pub async fn exec(docker: &Docker, container: &str, user: &str, cmd: &[&str]) -> anyhow::Result<ExecOutput> {
    use bollard::exec::{StartExecOptions, StartExecResults};
    use bollard::models::ExecConfig;
    use futures::StreamExt;
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: Some(user.to_string()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let created = docker.create_exec(container, config).await?;
    let options = StartExecOptions { detach: false, tty: false, output_capacity: None };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, Some(options)).await? {
        while let Some(chunk) = output.next().await {
            match chunk? {
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
    }
    let inspected = docker.inspect_exec(&created.id).await?;
    Ok(ExecOutput { exit_code: inspected.exit_code.unwrap_or(-1), stdout, stderr })
}
