//! Natter: a self-hostable real-time chat gateway that speaks the TalkJS REST API.
//!
//! # Layout, from the bottom up
//! No module imports one above it (`tests/it/layers.rs` checks it).
//! - `domain`: plain data and rules (ids, users, conversations, messages, reactions, filters, events); no I/O.
//! - `store`: the `Store` trait, `open`, the event log, and the SQL backends (SQLite embedded, PostgreSQL shared by
//!   several nodes); the durable truth, and the only source of `seq`. `wire`: JSON shapes of domain types.
//!   `metrics`, `limits`, `token` (user tokens).
//! - `hub`: local fan-out of encoded events to session outboxes; `hub::Node`, through which sessions watch keys
//!   and the `broker` (in-process, or Redis between nodes) delivers. `config`. `cluster`: what nodes tell each
//!   other for cluster-wide limits and presence. `http`: the HTTP error mapping and extractors.
//! - `app`: `AppState`, what every handler and session holds.
//! - `api`: the REST routes. `realtime`: the WebSocket gateway (frames, the sans-IO session and subscriptions, the
//!   socket shell, socket writes, the publisher, the catch-up reader that brings other nodes' events from the log).
//!   `webhooks`: each app's events, delivered from the log to its receivers.
//! - `gateway`: both routers and the layers around them; `run`, here.
//!
//! Start reading at `run`, then `gateway::router`, then `store::Store` and `realtime::session`.

pub mod domain;

pub mod metrics;
pub mod store;
pub mod telemetry;
pub mod wire;

pub mod hub;
pub mod limits;
pub mod token;

#[cfg(feature = "redis")]
pub mod cluster;
pub mod config;
pub mod http;

pub mod app;

pub mod api;
pub mod demo;
pub mod realtime;
pub mod webhooks;

pub mod gateway;
pub mod serve;

use std::{collections::HashMap, future::Future, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    app::AppState,
    config::{default_public_url, Config},
    domain::ids::AppId,
    hub::{Hub, Node},
    realtime::publisher::Publisher,
    wire::Links,
};

/// How long shutdown waits for WebSocket sessions to send their close frames.
const SESSION_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the store, wires the gateway and serves on `listener` until `shutdown` resolves; then finishes the
/// requests in flight and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local_addr = listener.local_addr().context("listener has no local address")?;
    let apps = config
        .apps
        .iter()
        .map(|app| Ok((AppId::parse(&app.app_id)?, app.secret.clone())))
        .collect::<Result<HashMap<_, _>, domain::ValidationError>>()
        .context("invalid app id")?;
    let limit_config = config.limits;
    let metrics = Arc::new(metrics::Metrics::default());
    let node =
        Node::new(Hub::with_metrics(metrics.clone()), &config.broker, config.history_bytes, config.window_cache_bytes)
            .map_err(|error| anyhow::anyhow!("{error} (--broker-url)"))?;
    let links = Links { public_url: config.public_url.clone().unwrap_or_else(|| default_public_url(local_addr)) };
    let publisher = Arc::new(Publisher::new(node.clone(), links.clone(), metrics.clone()));
    let webhooks = webhooks::Webhooks::new(&config.apps, &config.webhooks).context("invalid app id")?;
    let listeners: Vec<Arc<dyn store::CommitListener>> = vec![publisher, webhooks.listener()];
    let commit_metrics = metrics.clone();
    let hooks = store::StoreHooks {
        listener: Some(Arc::new(listeners)),
        observe_commit: Some(Arc::new(move |took: std::time::Duration, jobs: usize| {
            commit_metrics.commit_seconds.observe(took.as_secs_f64());
            commit_metrics.commit_batch_jobs.observe(jobs as f64);
        })),
    };
    let store_config = store::StoreConfig {
        data_dir: config.data_dir.clone(),
        database_url: config.database_url.clone(),
        retention: config.retention,
    };
    let store = store::open(&store_config, hooks).await.context("cannot open the store")?;
    if config.demo {
        // The demo runs in the first app, as its page's tokens do (`demo::session`).
        let first = config.apps.first().context("the demo needs an app")?;
        let app = AppId::parse(&first.app_id).context("invalid app id")?;
        demo::seed(store.as_ref(), &app).await.context("cannot seed the demo")?;
    }
    let state = AppState::new(app::Shared {
        store,
        node,
        apps: Arc::new(apps),
        links,
        config: Arc::new(config),
        shutdown: CancellationToken::new(),
        sessions: TaskTracker::new(),
        metrics,
        limits: Arc::new(limits::Limits::new(limit_config)),
        uploads: Arc::new(tokio::sync::Semaphore::new(api::files::MAX_CONCURRENT_UPLOADS)),
        dispatch: Arc::default(),
    });
    #[cfg(feature = "redis")]
    if let hub::broker::BrokerConfig::Redis(url) = &state.config.broker {
        cluster::spawn(url, state.limits.clone(), state.node.clone(), state.shutdown.clone())
            .map_err(|error| anyhow::anyhow!(error))?;
    }
    // One node (no broker) is the only one delivering: a lease it finds is its own earlier run's.
    let alone = matches!(state.config.broker, hub::broker::BrokerConfig::Local);
    webhooks
        .start(
            state.store.clone(),
            state.links.clone(),
            state.config.webhooks.clone(),
            state.metrics.clone(),
            alone,
            state.shutdown.clone(),
        )
        .await?;
    realtime::catchup::CatchUp {
        store: state.store.clone(),
        node: state.node.clone(),
        links: state.links.clone(),
        apps: state.apps.keys().cloned().collect(),
    }
    .start(state.shutdown.clone())
    .await;
    tracing::info!(%local_addr, "natter is listening");
    let sessions_stop = state.shutdown.clone();
    let sessions = state.sessions.clone();
    let serve_config = state.config.serve;
    let stop = async move {
        shutdown.await;
        // Stop accepting, and tell every session to close with 1001.
        sessions_stop.cancel();
    };
    serve::serve(listener, gateway::router(state), serve_config, stop).await;
    sessions.close();
    if tokio::time::timeout(SESSION_DRAIN_TIMEOUT, sessions.wait()).await.is_err() {
        tracing::warn!("sessions did not close in time");
    }
    tracing::info!("natter stopped");
    Ok(())
}
