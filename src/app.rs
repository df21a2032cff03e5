//! `AppState`: the store, this node's delivery (`hub::Node`), the apps, the configuration and the limits, shared by
//! every REST handler and WebSocket session. It sits below `api` and `realtime`, which both hold it; `gateway` and
//! `run` put it together.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Config,
    domain::{ids::AppId, Millis},
    hub::Node,
    metrics::Metrics,
    store::Store,
    wire::Links,
};

/// Cloned for every request and socket: one reference count, rather than a count per field, a cancellation
/// token's lock and a copy of the public URL.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Watching keys, publishing, and the recent events this node delivered.
    pub node: Node,
    /// App id to secret.
    pub apps: Arc<HashMap<AppId, String>>,
    pub links: Links,
    pub config: Arc<Config>,
    /// Cancelled when the gateway shuts down: every session closes with 1001.
    pub shutdown: CancellationToken,
    /// The running WebSocket sessions, so shutdown can wait for them.
    pub sessions: TaskTracker,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<crate::limits::Limits>,
    /// Permits for uploads read at once (`api::files`).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// The REST routes, set once the router is built: the batch endpoint runs each operation through them. Without
    /// their state, so that the state does not hold itself.
    pub dispatch: Arc<std::sync::OnceLock<axum::Router<AppState>>>,
}

/// The wall clock in Unix milliseconds; handlers read it once and pass it down.
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as Millis)
}
