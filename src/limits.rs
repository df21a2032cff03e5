//! Limits on what one app or one connection may cost the gateway: REST requests per second per app, WebSocket
//! connections per app, and client frames per second per connection. Token buckets from `governor`.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

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
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            rest: quota(config.rest_requests_per_second).map(RateLimiter::keyed),
            connections: DashMap::new(),
        }
    }

    /// Takes one REST request from the app's bucket, or says how long to wait.
    pub fn check_rest(&self, app: &AppId) -> Result<(), Duration> {
        match &self.rest {
            None => Ok(()),
            Some(limiter) => {
                limiter.check_key(app).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
            }
        }
    }

    /// Counts a new connection of `app`; `None` when the app is at its limit. Dropping the guard releases it.
    pub fn open_connection(self: &Arc<Self>, app: &AppId) -> Option<ConnectionGuard> {
        let limit = self.config.connections_per_app;
        let mut open = self.connections.entry(app.clone()).or_insert(0);
        if limit != 0 && *open >= limit {
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
