//! `AppState`: the store, the hub and its broker, the apps, wired together and shared by every handler; and the
//! `Publisher` that turns committed events into frames for the broker.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Config,
    domain::{event::Event, ids::AppId, Millis},
    hub::{broker::Broker, history::History, Hub, HubKey, Membership},
    metrics::Metrics,
    realtime::frames,
    store::Store,
    wire::Links,
};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    /// App id to secret.
    pub apps: Arc<HashMap<AppId, String>>,
    pub links: Links,
    pub config: Arc<Config>,
    /// Cancelled when the gateway shuts down: every session closes with 1001.
    pub shutdown: CancellationToken,
    /// The running WebSocket sessions, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Recent events, for sessions that resume.
    pub history: Arc<History>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<crate::limits::Limits>,
}

/// Encodes committed events once and hands them to the broker. The store calls it from its writer, in commit order,
/// so it never waits: the broker and the hub only `try_send`.
pub struct Publisher {
    pub broker: Arc<dyn Broker>,
    pub links: Links,
    /// What resuming sessions replay from.
    pub history: Arc<History>,
    pub metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn publish(&self, app: &AppId, events: &[Event]) {
        for event in events {
            self.metrics.events_published.inc();
            let encoded = Arc::new(frames::event_frame(event, app, &self.links));
            // Membership changes also reach the user's own key: a session that cannot see the conversation yet
            // learns that its user joined.
            if let Some(Membership::Joined(user_id) | Membership::Left(user_id)) = &encoded.membership {
                let key = HubKey::User { app_id: app.clone(), user_id: user_id.clone() };
                self.broker.publish(&key, Arc::clone(&encoded));
            }
            self.history.record(&encoded);
            let key = HubKey::Conversation { app_id: app.clone(), conversation_id: event.conversation_id.clone() };
            self.broker.publish(&key, encoded);
        }
    }
}

/// The wall clock in Unix milliseconds; handlers read it once and pass it down.
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as Millis)
}
