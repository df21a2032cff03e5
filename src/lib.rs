//! Natter: a self-hostable real-time chat gateway that speaks the TalkJS REST API.
//!
//! # Layout
//! - `domain`: plain data and rules (ids, users, conversations, messages, reactions, filters, events); no I/O.
//! - `store`: the `Store` trait and its SQLite backend; the only durable truth, and the only source of `seq`.
//! - `hub`: local fan-out of encoded event frames to session outboxes, behind the `broker` seam.
//! - `wire`: JSON shapes of domain types.
//! - `api`: the REST routes, authentication and the one error-to-response mapping.
//! - `realtime`: the WebSocket gateway: frames, the sans-IO session, the socket shell, socket writes.
//! - `app`: `AppState`, the wiring; `config`, `telemetry`.
//!
//! Start reading at `run`, then `api::router`, then `store::Store`.

pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod domain;
pub mod hub;
pub mod limits;

pub mod metrics;
pub mod realtime;
pub mod store;
pub mod telemetry;
pub mod wire;

use std::{collections::HashMap, future::Future, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    app::AppState,
    config::{default_public_url, Config},
    domain::ids::AppId,
    hub::{broker::LocalBroker, Hub},
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
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let apps = config
        .apps
        .iter()
        .map(|app| Ok((AppId::parse(&app.app_id)?, app.secret.clone())))
        .collect::<Result<HashMap<_, _>, domain::ValidationError>>()
        .context("invalid app id")?;
    let limit_config = config.limits;
    let metrics = Arc::new(metrics::Metrics::default());
    let hub = Hub::with_metrics(metrics.clone());
    let links = Links { public_url: config.public_url.clone().unwrap_or_else(|| default_public_url(local_addr)) };
    let history = Arc::new(hub::history::History::default());
    let publisher = app::Publisher {
        broker: Arc::new(LocalBroker::new(hub.clone())),
        links: links.clone(),
        history: history.clone(),
        metrics: metrics.clone(),
    };
    let sink: store::CommittedSink = Arc::new(move |committed: store::Committed| {
        publisher.publish(&committed.app, &committed.events);
    });
    let commit_metrics = metrics.clone();
    let hooks = store::StoreHooks {
        committed: Some(sink),
        observe_commit: Some(Arc::new(move |took: std::time::Duration, jobs: usize| {
            commit_metrics.commit_seconds.observe(took.as_secs_f64());
            commit_metrics.commit_batch_jobs.observe(jobs as f64);
        })),
    };
    let store = tokio::task::spawn_blocking(move || store::sqlite::SqliteStore::open(&data_dir, hooks))
        .await
        .context("store open task failed")?
        .context("cannot open the store")?;
    let state = AppState {
        store: Arc::new(store),
        hub,
        apps: Arc::new(apps),
        links,
        config: Arc::new(config),
        shutdown: CancellationToken::new(),
        sessions: TaskTracker::new(),
        history,
        metrics,
        limits: Arc::new(limits::Limits::new(limit_config)),
    };
    tracing::info!(%local_addr, "natter is listening");
    let sessions_stop = state.shutdown.clone();
    let sessions = state.sessions.clone();
    let stop = async move {
        shutdown.await;
        // Stop accepting (axum), and tell every session to close with 1001.
        sessions_stop.cancel();
    };
    // Small frames must leave at once: Nagle's algorithm would hold them behind unacknowledged data.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(cause = %error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, api::router(state)).with_graceful_shutdown(stop).await.context("server failed")?;
    sessions.close();
    if tokio::time::timeout(SESSION_DRAIN_TIMEOUT, sessions.wait()).await.is_err() {
        tracing::warn!("sessions did not close in time");
    }
    tracing::info!("natter stopped");
    Ok(())
}
