//! One receiver's delivery: a task that follows its app's event log from the receiver's saved position and sends
//! each webhook event until the receiver acknowledges it (a 2xx answer) or the retry time runs out; then moves on.
//!
//! Events go one at a time, in log order (commit order within the app, so in commit order per conversation too).
//! The position is saved at most every `SAVE_EVERY` and when the log is caught up: after a crash, delivery starts
//! again from the last saved position, so an event may come twice (same `id`) but is never skipped.
//! Each receiver is held by one node at a time through a lease in the store, renewed as positions are saved and
//! while retries wait; another node takes the receiver over when the lease lapses.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    events::{self, Outgoing, Planned},
    signature, Receiver,
};
use crate::{
    app::now_millis,
    config::WebhookConfig,
    domain::event::Logged,
    metrics::{AppLabels, Metrics},
    store::{LoggedEvent, Position, Store, WebhookFailure},
    wire::Links,
};

/// Log events read at a time.
const PAGE: usize = 100;
/// The longest a delivering node goes without saving its position (which renews the lease); the lease is at
/// least a second, several times this.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How often an idle receiver looks at the log for what other nodes committed (this node's commits wake it).
const POLL: Duration = Duration::from_secs(1);
/// How long delivery waits after the store failed it.
const STORE_RETRY: Duration = Duration::from_secs(1);

pub struct Delivery {
    pub store: Arc<dyn Store>,
    pub links: Links,
    pub config: WebhookConfig,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
    /// Who holds the lease: this process.
    pub owner: String,
    /// Take the receiver over whoever holds it (one node: the holder can only be an earlier run of this one).
    pub take_over: bool,
    pub receiver: Arc<Receiver>,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
    /// Everything up to here has been acknowledged or given up on.
    pub cursor: Position,
    /// What the store holds as the cursor.
    pub saved: Position,
    pub last_save: Instant,
    pub holding: bool,
}

/// What stopped a delivery in its tracks.
enum Stop {
    Shutdown,
    /// Another node holds the receiver now.
    LeaseLost,
}

impl Delivery {
    fn labels(&self) -> AppLabels {
        AppLabels { app: self.receiver.app.to_string() }
    }

    /// Claims the receiver; says whether this node holds it now.
    pub async fn claim(&mut self) -> bool {
        let app = &self.receiver.app;
        let start = match self.store.latest_position(app).await {
            Ok(position) => position,
            Err(error) => {
                tracing::warn!(cause = %error, app = %app, "webhooks cannot read the log");
                return false;
            }
        };
        let now = now_millis();
        let lease_until = now + self.config.lease.as_millis() as i64;
        match self
            .store
            .claim_webhook(app, &self.receiver.url, &self.owner, now, lease_until, start, self.take_over)
            .await
        {
            Ok(Some(position)) => {
                self.cursor = position;
                self.saved = position;
                self.last_save = Instant::now();
                self.holding = true;
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(cause = %error, app = %app, "webhooks cannot claim a receiver");
                false
            }
        }
    }

    pub async fn run(mut self) {
        loop {
            while !self.holding {
                if self.claim().await {
                    break;
                }
                if self.sleep(self.config.lease / 3).await.is_err() {
                    return;
                }
            }
            match self.follow().await {
                Stop::Shutdown => {
                    let _ = self.save().await;
                    return;
                }
                Stop::LeaseLost => {
                    tracing::info!(app = %self.receiver.app, "another node delivers this webhook receiver now");
                    self.holding = false;
                }
            }
        }
    }

    /// Delivers what the log holds past the cursor, then waits for more, while this node holds the receiver.
    async fn follow(&mut self) -> Stop {
        loop {
            let page = match self.store.app_events(&self.receiver.app, self.cursor, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(cause = %error, app = %self.receiver.app, "webhooks cannot read the log");
                    if let Err(stop) = self.pause(STORE_RETRY).await {
                        return stop;
                    }
                    continue;
                }
            };
            if page.is_empty() {
                self.metrics.webhook_lag_seconds.get_or_create(&self.labels()).set(0);
                // Caught up: save what moved (at most every SAVE_EVERY), and renew the lease in good time.
                let since = self.last_save.elapsed();
                if (self.cursor != self.saved && since >= SAVE_EVERY) || since >= self.config.lease / 3 {
                    if let Err(stop) = self.save().await {
                        return stop;
                    }
                }
                let wait = tokio::time::timeout(POLL.min(self.config.lease / 3), self.wake.notified());
                tokio::select! {
                    _ = wait => {}
                    _ = self.shutdown.cancelled() => return Stop::Shutdown,
                }
                continue;
            }
            for logged in page {
                let lag = (now_millis() - logged.committed_at).max(0) / 1000;
                self.metrics.webhook_lag_seconds.get_or_create(&self.labels()).set(lag);
                if let Err(stop) = self.handle(&logged).await {
                    return stop;
                }
                self.cursor = logged.position;
                if self.last_save.elapsed() >= SAVE_EVERY {
                    if let Err(stop) = self.save().await {
                        return stop;
                    }
                }
            }
        }
    }

    /// Sends every webhook event one logged event makes.
    async fn handle(&mut self, logged: &LoggedEvent<Logged>) -> Result<(), Stop> {
        let receiver = Arc::clone(&self.receiver);
        let planned = loop {
            match events::plan(self.store.as_ref(), &receiver.app, &self.links, logged, &receiver).await {
                Ok(planned) => break planned,
                Err(error) => {
                    tracing::warn!(cause = %error, app = %receiver.app, "webhooks cannot read an event's data");
                    self.pause(STORE_RETRY).await?;
                }
            }
        };
        match planned {
            Planned::Ready(outgoing) => {
                for event in outgoing {
                    self.deliver(&event).await?;
                }
            }
            Planned::Reads { reader, conversation, mut after, until } => loop {
                let (outgoing, next) = match events::read_receipts(
                    self.store.as_ref(),
                    &self.receiver.app,
                    &self.links,
                    logged,
                    &reader,
                    &conversation,
                    after,
                    until,
                )
                .await
                {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        tracing::warn!(cause = %error, app = %self.receiver.app, "webhooks cannot read a read's messages");
                        self.pause(STORE_RETRY).await?;
                        continue;
                    }
                };
                for event in outgoing {
                    self.deliver(&event).await?;
                }
                match next {
                    Some(seq) => after = seq,
                    None => break,
                }
            },
        }
        Ok(())
    }

    /// Sends one event until it is acknowledged or its retry time is up (then it is recorded as failed).
    async fn deliver(&mut self, event: &Outgoing) -> Result<(), Stop> {
        let first = Instant::now();
        let mut backoff = self.config.first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = tokio::select! {
                outcome = self.attempt(event) => outcome,
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
            };
            match outcome {
                Ok(()) => {
                    self.metrics.webhook_deliveries.get_or_create(&self.labels()).inc();
                    return Ok(());
                }
                Err(error) if first.elapsed() + backoff > self.config.retry_for => {
                    self.metrics.webhook_failures.get_or_create(&self.labels()).inc();
                    tracing::warn!(app = %self.receiver.app, id = %event.id, kind = event.kind, attempts, cause = %error,
                        "webhook event given up on");
                    let failure = WebhookFailure {
                        event_id: event.id.clone(),
                        kind: event.kind,
                        attempts,
                        last_error: error,
                        failed_at: now_millis(),
                    };
                    if let Err(error) =
                        self.store.record_webhook_failure(&self.receiver.app, &self.receiver.url, failure).await
                    {
                        tracing::warn!(cause = %error, "cannot record a failed webhook event");
                    }
                    return Ok(());
                }
                Err(error) => {
                    self.metrics.webhook_retries.get_or_create(&self.labels()).inc();
                    tracing::debug!(app = %self.receiver.app, id = %event.id, attempts, cause = %error, "webhook attempt failed");
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// One signed POST; a 2xx answer within the timeout acknowledges it.
    async fn attempt(&self, event: &Outgoing) -> Result<(), String> {
        let timestamp = now_millis().to_string();
        let signature = signature::sign(&self.receiver.secret, &timestamp, &event.body);
        let response = self
            .client
            .post(&self.receiver.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::TIMESTAMP_HEADER, &timestamp)
            .header(signature::SIGNATURE_HEADER, signature)
            .timeout(self.config.timeout)
            .body(event.body.clone())
            .send()
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }

    /// Saves the cursor and renews the lease.
    async fn save(&mut self) -> Result<(), Stop> {
        let lease_until = now_millis() + self.config.lease.as_millis() as i64;
        let saved = self
            .store
            .save_webhook_position(&self.receiver.app, &self.receiver.url, &self.owner, self.cursor, lease_until)
            .await;
        match saved {
            Ok(true) => {
                self.last_save = Instant::now();
                self.saved = self.cursor;
                Ok(())
            }
            Ok(false) => Err(Stop::LeaseLost),
            // The store is down: go on, and save again soon. (Should it stay down past the lease, another node may
            // deliver some events again: at least once, still.)
            Err(error) => {
                tracing::warn!(cause = %error, app = %self.receiver.app, "cannot save webhook position");
                Ok(())
            }
        }
    }

    /// Waits, renewing the lease as it goes.
    async fn pause(&mut self, duration: Duration) -> Result<(), Stop> {
        let until = Instant::now() + duration;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.sleep(left.min(self.config.lease / 3)).await?;
            if self.last_save.elapsed() >= self.config.lease / 3 {
                self.save().await?;
            }
        }
    }

    async fn sleep(&self, duration: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = tokio::time::sleep(duration) => Ok(()),
            _ = self.shutdown.cancelled() => Err(Stop::Shutdown),
        }
    }
}
