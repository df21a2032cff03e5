//! Limits on what one app or one connection may cost the gateway: REST requests per second per app, WebSocket
//! connections per app, and client frames per second per connection. Token buckets from `governor`.
//!
//! The per-app limits hold for a whole cluster, through what this node knows of the others (`ClusterView`, kept
//! by `cluster`): each request costs as many tokens as there are live nodes, so N nodes behind an even balancer
//! admit the app's rate together (an uneven one admits less, never more); a connection counts against the app's
//! connections on every node. Both follow the other nodes' reports, which are up to a sync interval old.

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use dashmap::DashMap;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter,
};

use crate::domain::ids::AppId;

/// Subscriptions one WebSocket session may hold, unless configured otherwise (`--subscriptions-per-connection`).
pub const DEFAULT_SUBSCRIPTIONS_PER_CONNECTION: usize = 1000;

/// The configured limits; 0 switches one off.
#[derive(Clone, Copy, Debug)]
pub struct LimitConfig {
    /// Sustained REST requests per second per app; bursts may reach twice that.
    pub rest_requests_per_second: u32,
    /// Open WebSocket connections per app.
    pub connections_per_app: usize,
    /// Sustained client frames per second per connection; bursts may reach twice that.
    pub frames_per_second: u32,
    /// Subscriptions one connection may hold.
    pub subscriptions_per_connection: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            rest_requests_per_second: 20_000,
            connections_per_app: 100_000,
            frames_per_second: 100,
            subscriptions_per_connection: DEFAULT_SUBSCRIPTIONS_PER_CONNECTION,
        }
    }
}

fn quota(per_second: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).expect("twice a positive rate is positive");
    Some(Quota::per_second(rate).allow_burst(burst))
}

pub struct Limits {
    config: LimitConfig,
    rest: Option<DefaultKeyedRateLimiter<AppId>>,
    connections: DashMap<AppId, usize>,
    cluster: ClusterView,
}

/// What this node knows of the other nodes of its cluster; on a single node, nothing.
#[derive(Default)]
pub struct ClusterView {
    /// Live nodes, this one included (0 until the first report: counts as 1).
    nodes: AtomicUsize,
    /// Each app's open connections on the other nodes.
    remote_connections: DashMap<AppId, usize>,
}

impl ClusterView {
    /// Takes in the other nodes' latest reports.
    pub fn update(&self, nodes: usize, remote_connections: impl IntoIterator<Item = (AppId, usize)>) {
        self.nodes.store(nodes.max(1), Ordering::Relaxed);
        let fresh: std::collections::HashMap<AppId, usize> = remote_connections.into_iter().collect();
        self.remote_connections.retain(|app, _| fresh.contains_key(app));
        for (app, open) in fresh {
            self.remote_connections.insert(app, open);
        }
    }

    fn nodes(&self) -> u32 {
        self.nodes.load(Ordering::Relaxed).clamp(1, u32::MAX as usize) as u32
    }

    fn remote_connections(&self, app: &AppId) -> usize {
        self.remote_connections.get(app).map_or(0, |open| *open)
    }
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            rest: quota(config.rest_requests_per_second).map(RateLimiter::keyed),
            connections: DashMap::new(),
            cluster: ClusterView::default(),
        }
    }

    pub fn cluster(&self) -> &ClusterView {
        &self.cluster
    }

    /// This node's open connections per app, for the other nodes.
    pub fn local_connections(&self) -> Vec<(AppId, usize)> {
        self.connections.iter().map(|entry| (entry.key().clone(), *entry.value())).collect()
    }

    /// Takes one REST request from the app's bucket (as many tokens as there are live nodes), or says how long to
    /// wait.
    pub fn check_rest(&self, app: &AppId) -> Result<(), Duration> {
        let Some(limiter) = &self.rest else { return Ok(()) };
        let burst = self.config.rest_requests_per_second.saturating_mul(2).max(1);
        let cost = NonZeroU32::new(self.cluster.nodes().min(burst)).expect("at least one node");
        match limiter.check_key_n(app, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Counts a new connection of `app`; `None` when the app is at its limit, on this node and the others
    /// together. Dropping the guard releases it.
    pub fn open_connection(self: &Arc<Self>, app: &AppId) -> Option<ConnectionGuard> {
        let limit = self.config.connections_per_app;
        let remote = self.cluster.remote_connections(app);
        let mut open = self.connections.entry(app.clone()).or_insert(0);
        if limit != 0 && *open + remote >= limit {
            return None;
        }
        *open += 1;
        Some(ConnectionGuard { limits: Arc::clone(self), app: app.clone() })
    }

    pub fn subscriptions_per_connection(&self) -> usize {
        match self.config.subscriptions_per_connection {
            0 => usize::MAX,
            limit => limit,
        }
    }

    /// A bucket for one connection's frames, if frames are limited.
    pub fn frame_limiter(&self) -> Option<FrameLimiter> {
        quota(self.config.frames_per_second).map(|quota| FrameLimiter { bucket: RateLimiter::direct(quota) })
    }
}

pub struct ConnectionGuard {
    limits: Arc<Limits>,
    app: AppId,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let now_empty = match self.limits.connections.get_mut(&self.app) {
            Some(mut open) => {
                *open = open.saturating_sub(1);
                *open == 0
            }
            None => false,
        };
        // The guard above is released before removing: DashMap deadlocks on re-entry.
        if now_empty {
            self.limits.connections.remove_if(&self.app, |_, open| *open == 0);
        }
    }
}

pub struct FrameLimiter {
    bucket: DefaultDirectRateLimiter,
}

impl FrameLimiter {
    /// Whether one more frame may be handled now.
    pub fn allow(&self) -> bool {
        self.bucket.check().is_ok()
    }
}

/// Seconds to put in `Retry-After`: whole seconds, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
