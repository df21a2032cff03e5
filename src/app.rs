//! `AppState`: the store, the hub and its broker, the apps, wired together and shared by every handler.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use crate::{
    config::Config,
    domain::{event::Event, ids::AppId, Millis},
    hub::{broker::Broker, ConversationKey, Hub},
    store::Store,
    wire::{self, Links},
};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub broker: Arc<dyn Broker>,
    /// App id to secret.
    pub apps: Arc<HashMap<AppId, String>>,
    pub links: Links,
    pub config: Arc<Config>,
}

impl AppState {
    /// Encodes each committed event once and hands it to the broker. Never waits.
    pub fn publish(&self, app: &AppId, events: &[Event]) {
        for event in events {
            let frame = wire::event_frame(event, app, &self.links);
            let key = ConversationKey { app_id: app.clone(), conversation_id: event.conversation_id.clone() };
            self.broker.publish(&key, frame);
        }
    }
}

/// The wall clock in Unix milliseconds; handlers read it once and pass it down.
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as Millis)
}
