//! Catch-up from the event log, on nodes that share a database: what other nodes committed reaches this node's
//! sessions even when the broker lost it or is down.
//!
//! For each app, a cursor follows the log by position (within an app, positions follow commit order, so a reader
//! never skips an event that commits later with a smaller position). Every event past the cursor whose
//! conversation (or, for a join or leave, whose user) a local session watches, and that this node has not
//! delivered already, is encoded and delivered here. The broker is the fast path; this is the sure one: it reads
//! often while the broker is down (`DISCONNECTED_INTERVAL`), and now and then while it is up
//! (`CONNECTED_INTERVAL`), which bounds how late an event the broker dropped can be.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{
    frames,
    publisher::{for_each_key, user_delivery},
};
use crate::{
    domain::{
        event::{EventKind, Logged},
        ids::AppId,
    },
    hub::{HubKey, Node},
    store::{Position, Store},
    wire::Links,
};

/// How often the log is read while the broker carries events.
pub const CONNECTED_INTERVAL: Duration = Duration::from_secs(2);
/// How often it is read while the broker is down: this is then how events of other nodes arrive.
pub const DISCONNECTED_INTERVAL: Duration = Duration::from_millis(200);
/// Events read per query.
const PAGE: usize = 500;

pub struct CatchUp {
    pub store: Arc<dyn Store>,
    pub node: Node,
    pub links: Links,
    pub apps: Vec<AppId>,
}

impl CatchUp {
    /// Follows the log until `stop`; only for brokers between nodes (a single node misses nothing). Returns once
    /// it knows where each app's log ends, before the node serves anyone: what was committed before is not owed
    /// to anyone here, and everything after is.
    pub async fn start(self, stop: CancellationToken) {
        if self.node.broker_connected().is_none() {
            return;
        }
        let mut cursors = HashMap::new();
        for app in &self.apps {
            loop {
                match self.store.latest_position(app).await {
                    Ok(latest) => {
                        cursors.insert(app.clone(), latest);
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(cause = %error, "catch-up cannot read the log yet");
                        tokio::time::sleep(DISCONNECTED_INTERVAL).await;
                    }
                }
            }
        }
        tokio::spawn(async move {
            tokio::select! {
                () = self.run(cursors) => {}
                () = stop.cancelled() => {}
            }
        });
    }

    async fn run(self, mut cursors: HashMap<AppId, Position>) {
        loop {
            let connected = self.node.broker_connected().unwrap_or(true);
            tokio::time::sleep(if connected { CONNECTED_INTERVAL } else { DISCONNECTED_INTERVAL }).await;
            for (app, cursor) in &mut cursors {
                match self.follow(app, *cursor).await {
                    Ok(next) => *cursor = next,
                    Err(error) => tracing::warn!(cause = %error, "catch-up cannot read the log"),
                }
            }
        }
    }

    /// Delivers what is past `cursor`; returns the new cursor.
    async fn follow(&self, app: &AppId, mut cursor: Position) -> Result<Position, crate::store::StoreError> {
        loop {
            let events = self.store.app_events(app, cursor, PAGE).await?;
            let full = events.len() == PAGE;
            for logged in events {
                cursor = logged.position;
                let event = match &logged.event {
                    Logged::Conversation(event) => event,
                    Logged::User(event) => {
                        if let Some((key, encoded)) = user_delivery(app, event) {
                            if self.node.watches(&key) {
                                self.node.deliver_missed(&key, encoded);
                            }
                        }
                        continue;
                    }
                };
                let conversation_id = &event.conversation_id;
                let conversation_key =
                    HubKey::Conversation { app_id: app.clone(), conversation_id: conversation_id.clone() };
                let user = match &event.kind {
                    EventKind::ParticipantJoined { user_id, .. } | EventKind::ParticipantLeft { user_id } => {
                        Some(HubKey::User { app_id: app.clone(), user_id: user_id.clone() })
                    }
                    _ => None,
                };
                let watched = self.node.watches(&conversation_key) || user.is_some_and(|key| self.node.watches(&key));
                if watched {
                    let encoded = Arc::new(frames::event_frame(event, app, &self.links));
                    for_each_key(app, conversation_id, encoded, |key, event| self.node.deliver_missed(key, event));
                }
            }
            if !full {
                return Ok(cursor);
            }
        }
    }
}
