//! The HTTP client the service uses for etcd and its own healthcheck.

use std::time::Duration;

pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    // In a workspace build another member's features may compile reqwest with rustls but no crypto
    // provider; installing ring first makes the builder work either way (a no-op when one is set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).build()
}
