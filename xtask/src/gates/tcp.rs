//! `tcp`: a port accepts connections.

use std::time::Duration;

use tokio::net::TcpStream;

use super::Check;
use crate::config::TcpGate;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn check(gate: &TcpGate) -> Check {
    let expected = format!("{} accepts connections", gate.address);
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&gate.address)).await {
        Ok(Ok(_)) => Check::new(true, expected, "connected"),
        Ok(Err(e)) => Check::new(false, expected, format!("connect failed: {e}")),
        Err(_) => Check::new(false, expected, format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_port_passes_and_closed_port_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(check(&TcpGate { address: open }).await.passed);
        drop(listener);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let c = check(&TcpGate { address: closed }).await;
        assert!(!c.passed, "{c:?}");
    }
}
