//! Prometheus metrics, in an explicit registry (no global recorder, so test gateways stay apart). `/metrics`
//! renders them in the text format.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    /// The route template (`/v1/{appId}/users/{userId}`), never the path with its ids.
    pub route: String,
    pub status: u16,
}

/// One app's webhook deliveries (one receiver is not told from another: URLs may hold secrets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub subscriptions: Gauge,
    pub events_published: Counter,
    pub deliveries: Counter,
    pub slow_consumer_disconnects: Counter,
    /// Committed events whose log position did not follow the previous one's (should stay 0).
    pub commit_order_violations: Counter,
    /// Holes sessions found in what the broker delivered, and fetched from the event log.
    pub hole_fetches: Counter,
    /// Replays (resumes, holes) the recent-events cache could not serve, read from the event log.
    pub replay_log_reads: Counter,
    /// Subscriptions' newest windows answered from the node's window cache, without a store read.
    pub window_cache_hits: Counter,
    /// Store reads sessions have running now.
    pub session_reads_in_flight: Gauge,
    /// Bytes of encoded events in the recent-events cache (set when the metrics are read).
    pub history_bytes: Gauge,
    /// Uploads being read now.
    pub uploads_in_progress: Gauge,
    pub rest_requests: Family<RouteLabels, Histogram>,
    pub commit_seconds: Histogram,
    pub commit_batch_jobs: Histogram,
    /// Webhook events a receiver acknowledged.
    pub webhook_deliveries: Family<AppLabels, Counter>,
    /// Webhook attempts that failed and will be retried.
    pub webhook_retries: Family<AppLabels, Counter>,
    /// Webhook events given up on after retrying for the configured time.
    pub webhook_failures: Family<AppLabels, Counter>,
    /// Seconds since the commit of the oldest event a receiver of the app has not had yet (0: caught up).
    pub webhook_lag_seconds: Family<AppLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("natter");
        let connections = Gauge::default();
        let subscriptions = Gauge::default();
        let events_published = Counter::default();
        let deliveries = Counter::default();
        let slow_consumer_disconnects = Counter::default();
        let commit_order_violations = Counter::default();
        let hole_fetches = Counter::default();
        let replay_log_reads = Counter::default();
        let window_cache_hits = Counter::default();
        let session_reads_in_flight = Gauge::default();
        let history_bytes = Gauge::default();
        let uploads_in_progress = Gauge::default();
        let rest_requests = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        let commit_seconds = Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]);
        let commit_batch_jobs = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        registry.register("websocket_connections", "Open WebSocket sessions", connections.clone());
        registry.register("subscriptions", "Conversations watched by sessions", subscriptions.clone());
        registry.register("events_published", "Events published after commit", events_published.clone());
        registry.register("deliveries", "Events handed to session outboxes", deliveries.clone());
        registry.register(
            "slow_consumer_disconnects",
            "Sessions cut off because their outbox overflowed",
            slow_consumer_disconnects.clone(),
        );
        registry.register(
            "commit_order_violations",
            "Committed events whose log position did not follow the previous one",
            commit_order_violations.clone(),
        );
        registry.register("hole_fetches", "Holes in delivered events, filled from the event log", hole_fetches.clone());
        registry.register(
            "replay_log_reads",
            "Replays (resumes and holes) read from the event log rather than the recent-events cache",
            replay_log_reads.clone(),
        );
        registry.register(
            "window_cache_hits",
            "Subscriptions' newest windows answered from the window cache, without a store read",
            window_cache_hits.clone(),
        );
        registry.register(
            "session_reads_in_flight",
            "Store reads WebSocket sessions have running now",
            session_reads_in_flight.clone(),
        );
        registry.register("history_bytes", "Bytes of recent encoded events kept in memory", history_bytes.clone());
        registry.register("uploads_in_progress", "File uploads being read now", uploads_in_progress.clone());
        registry.register("rest_request_duration_seconds", "REST request latency by route", rest_requests.clone());
        registry.register(
            "store_commit_duration_seconds",
            "Group commit latency, fsync included",
            commit_seconds.clone(),
        );
        registry.register(
            "store_commit_batch_jobs",
            "Writes committed together in one transaction",
            commit_batch_jobs.clone(),
        );
        let webhook_deliveries = Family::<AppLabels, Counter>::default();
        let webhook_retries = Family::<AppLabels, Counter>::default();
        let webhook_failures = Family::<AppLabels, Counter>::default();
        let webhook_lag_seconds = Family::<AppLabels, Gauge>::default();
        registry.register("webhook_deliveries", "Webhook events receivers acknowledged", webhook_deliveries.clone());
        registry.register(
            "webhook_retries",
            "Webhook attempts that failed and will be retried",
            webhook_retries.clone(),
        );
        registry.register(
            "webhook_failures",
            "Webhook events given up on after retrying for the configured time",
            webhook_failures.clone(),
        );
        registry.register(
            "webhook_lag_seconds",
            "Age of the oldest event a webhook receiver of the app has not had yet",
            webhook_lag_seconds.clone(),
        );
        Self {
            registry,
            webhook_deliveries,
            webhook_retries,
            webhook_failures,
            webhook_lag_seconds,
            connections,
            subscriptions,
            events_published,
            deliveries,
            slow_consumer_disconnects,
            commit_order_violations,
            hole_fetches,
            replay_log_reads,
            window_cache_hits,
            session_reads_in_flight,
            history_bytes,
            uploads_in_progress,
            rest_requests,
            commit_seconds,
            commit_batch_jobs,
        }
    }
}

impl Metrics {
    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
