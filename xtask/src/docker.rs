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
