//! Everything a request handler needs, shared across the server.

use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;

use crate::{cache::Cache, config::Config, metrics::Metrics, ratelimit::TokenBucket};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub cache: Cache,
    pub metrics: Metrics,
    /// For dependency checks (etcd `/health`); short timeouts.
    pub http: reqwest::Client,
    pub limiter: Option<Arc<Mutex<TokenBucket>>>,
}
