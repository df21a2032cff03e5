//! Webhooks: each app's committed events, delivered from the event log (a transactional outbox) to the app's
//! receivers, signed as TalkJS signs them. A write never waits for a webhook: the request path only commits, and
//! one task per receiver (`delivery`) follows the log behind it, so a receiver that is down or slow delays only
//! its own deliveries. `events` turns logged events into webhook events; `signature` signs them.

use std::{collections::HashMap, sync::Arc, time::Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{AppCredentials, WebhookConfig},
    domain::ids::{random_base62, AppId},
    metrics::Metrics,
    store::{CommitListener, Committed, Position, Store},
    wire::Links,
};

pub mod delivery;
pub mod events;
pub mod signature;

/// One receiver of one app's events.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub app: AppId,
    pub url: String,
    /// The event types it takes; `None`: all.
    pub events: Option<Vec<String>>,
    /// The app's secret, which signs its events.
    pub secret: String,
}

impl Receiver {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.as_ref().is_none_or(|events| events.iter().any(|event| event == kind))
    }
}

/// Every receiver the configuration names, with what wakes each of them.
pub struct Webhooks {
    receivers: Vec<(Receiver, Arc<Notify>)>,
}

impl Webhooks {
    /// Each app's own receivers (apps.json), then `--webhook-url` for every app; a URL an app already has is not
    /// added again.
    pub fn new(apps: &[AppCredentials], config: &WebhookConfig) -> Result<Self, crate::domain::ValidationError> {
        let mut receivers = Vec::new();
        for app in apps {
            let app_id = AppId::parse(&app.app_id)?;
            let own = app.webhooks.iter().map(|endpoint| (endpoint.url.clone(), endpoint.events.clone()));
            let defaults = config.default_urls.iter().map(|url| (url.clone(), None));
            let mut seen = Vec::new();
            for (url, events) in own.chain(defaults) {
                if seen.contains(&url) {
                    continue;
                }
                seen.push(url.clone());
                let receiver = Receiver { app: app_id.clone(), url, events, secret: app.secret.clone() };
                receivers.push((receiver, Arc::new(Notify::new())));
            }
        }
        Ok(Self { receivers })
    }

    /// What the store tells of each commit: it wakes the receivers of the committing app.
    pub fn listener(&self) -> Arc<dyn CommitListener> {
        let mut by_app: HashMap<AppId, Vec<Arc<Notify>>> = HashMap::new();
        for (receiver, wake) in &self.receivers {
            by_app.entry(receiver.app.clone()).or_default().push(wake.clone());
        }
        Arc::new(Wakers { by_app })
    }

    /// Claims each receiver (before the gateway serves, so that a receiver seen for the first time gets every
    /// event from now on) and starts its delivery task.
    #[allow(clippy::too_many_arguments, reason = "what delivery needs, given once")]
    pub async fn start(
        self,
        store: Arc<dyn Store>,
        links: Links,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
        take_over: bool,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        if self.receivers.is_empty() {
            return Ok(());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("natter-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let owner = random_base62(16);
        for (receiver, wake) in self.receivers {
            tracing::info!(app = %receiver.app, "webhook receiver configured");
            let mut delivery = delivery::Delivery {
                store: store.clone(),
                links: links.clone(),
                config: config.clone(),
                metrics: metrics.clone(),
                client: client.clone(),
                owner: owner.clone(),
                take_over,
                receiver: Arc::new(receiver),
                wake,
                shutdown: shutdown.clone(),
                cursor: Position::default(),
                saved: Position::default(),
                last_save: Instant::now(),
                holding: false,
            };
            delivery.claim().await;
            tokio::spawn(delivery.run());
        }
        Ok(())
    }
}

struct Wakers {
    by_app: HashMap<AppId, Vec<Arc<Notify>>>,
}

impl CommitListener for Wakers {
    fn committed(&self, committed: &Committed) {
        for wake in self.by_app.get(&committed.app).into_iter().flatten() {
            wake.notify_one();
        }
    }
}
