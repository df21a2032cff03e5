//! This node's side of delivery, the one place sessions, the publisher and the broker meet (centrifuge's
//! `node.go`): sessions watch keys through it, the publisher hands it committed events, and everything the broker
//! delivers comes in through one entry point, `Inbound::deliver`, which feeds the recent-events cache and the hub.
//!
//! The node watches a key on the broker when its first local watcher arrives and stops when the last leaves; both
//! calls happen under the hub's lock on that key, so they reach the broker in the order the key's watchers changed.

use std::sync::{Arc, Weak};

use super::{
    broker::{Broker, BrokerConfig},
    history::History,
    presence::Presence,
    windows::WindowCache,
    Hub, HubKey, Outbox, SharedEvent, Stream, WatcherId,
};

#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    hub: Hub,
    broker: Arc<dyn Broker>,
    history: History,
    /// Only on a single node: see `windows`.
    windows: Option<WindowCache>,
    presence: Presence,
}

/// Where a broker delivers. It holds the node weakly: the node owns the broker, not the other way round.
#[derive(Clone)]
pub struct Inbound {
    node: Weak<NodeInner>,
}

impl Node {
    /// Builds the node with its broker. Must run inside the tokio runtime (a broker may spawn tasks).
    pub fn new(
        hub: Hub,
        broker: &BrokerConfig,
        history_bytes: usize,
        window_cache_bytes: usize,
    ) -> Result<Self, String> {
        let mut built = Ok(());
        let inner = Arc::new_cyclic(|node| {
            let broker = broker.build(Inbound { node: node.clone() }).unwrap_or_else(|error| {
                built = Err(error);
                Arc::new(super::broker::LocalBroker::new(Inbound { node: node.clone() }))
            });
            let windows = (window_cache_bytes > 0 && !broker.spans_nodes())
                .then(|| WindowCache::with_max_bytes(window_cache_bytes));
            NodeInner {
                broker,
                hub,
                history: History::with_max_bytes(history_bytes),
                windows,
                presence: Presence::default(),
            }
        });
        built.map(|()| Self { inner })
    }

    /// Whether this node has a session watching `key`.
    pub fn watches(&self, key: &HubKey) -> bool {
        self.inner.hub.is_watched(key)
    }

    /// Whether events of other nodes arrive through the broker right now; `None` on a single node.
    pub fn broker_connected(&self) -> Option<bool> {
        self.inner.broker.spans_nodes().then(|| self.inner.broker.connected())
    }

    /// An event read back from the log that the broker may not have brought: delivered here only, unless this
    /// node delivered it already.
    pub fn deliver_missed(&self, key: &HubKey, event: SharedEvent) {
        let known = matches!(key, HubKey::Conversation { .. }) && self.inner.history.holds(&event);
        if !known {
            Inbound { node: Arc::downgrade(&self.inner) }.deliver(key, event);
        }
    }

    /// Starts delivering the key's events to `outbox`.
    pub fn watch(&self, key: HubKey, outbox: Outbox) -> WatcherId {
        self.inner.hub.watch(key, outbox, |key| self.inner.broker.watch(key))
    }

    pub fn unwatch(&self, key: &HubKey, id: WatcherId) {
        self.inner.hub.unwatch(key, id, |key| self.inner.broker.unwatch(key));
    }

    /// Publishes a committed event under a key, to every node that watches it (this one included).
    pub fn publish(&self, key: &HubKey, event: SharedEvent) {
        self.inner.broker.publish(key, event);
    }

    /// Which users have sessions on this node.
    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    /// The recent events this node delivered.
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// Conversations' newest windows, on a single node; `None` when a broker spans nodes or it is turned off.
    pub fn windows(&self) -> Option<&WindowCache> {
        self.inner.windows.as_ref()
    }
}

impl Inbound {
    /// An event from the broker: remembered for resumes (once, under its conversation's key), the cached windows
    /// it outdates dropped, then fanned out (after the drop: a subscriber that got a window gets what follows it).
    pub fn deliver(&self, key: &HubKey, event: SharedEvent) {
        let Some(node) = self.node.upgrade() else { return };
        match key {
            HubKey::Conversation { app_id, conversation_id } => {
                node.history.record(&event);
                if let Some(windows) = &node.windows {
                    windows.conversation_changed(app_id, conversation_id);
                }
            }
            // A join or leave comes under the user's key first, and the user's session reads the window on it:
            // the cached one, from before the change of who may see it, must be gone by then.
            HubKey::User { app_id, .. } if event.membership.is_some() => {
                if let (Some(windows), Stream::Conversation(conversation_id)) = (&node.windows, &event.stream) {
                    windows.conversation_changed(app_id, conversation_id);
                }
            }
            HubKey::Profile { app_id, .. } => {
                if let Some(windows) = &node.windows {
                    windows.user_changed(app_id);
                }
            }
            _ => {}
        }
        node.hub.publish(key, &event, |key| node.broker.unwatch(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::ids::{AppId, ConversationId, Seq, UserId},
        hub::{EncodedEvent, Membership},
        store::{MessageWindow, NewestWindow},
    };

    #[tokio::test]
    async fn a_join_under_the_users_key_alone_drops_the_cached_window_of_its_conversation() {
        let node = Node::new(Hub::default(), &BrokerConfig::Local, 1 << 20, 1 << 20).unwrap();
        let windows = node.windows().expect("a single node caches windows");
        let (app, c) = (AppId::parse("app").unwrap(), ConversationId::parse("c").unwrap());
        let (alice, carol) = (UserId::parse("alice").unwrap(), UserId::parse("carol").unwrap());
        let read = NewestWindow {
            window: MessageWindow { seq: Seq(1), participant: true, messages: Vec::new(), loaded_all: true },
            participants: Some(vec![alice]),
        };
        windows.fill(&app, &c, windows.begin(&app, &c), &read);
        let outsider = windows.window(&app, &c, &carol, 30).expect("cached");
        assert!(!outsider.participant);

        let joined = EncodedEvent {
            app_id: app.clone(),
            stream: Stream::Conversation(c.clone()),
            seq: Seq(2),
            membership: Some(Membership::Joined(carol.clone())),
            frame: Default::default(),
        };
        node.publish(&HubKey::User { app_id: app.clone(), user_id: carol.clone() }, Arc::new(joined));
        // Carol's session reads her window on this delivery, before the conversation's key has the event.
        assert!(windows.window(&app, &c, &carol, 30).is_none(), "the window from before the join is gone");
    }
}
