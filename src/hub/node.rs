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
    Hub, HubKey, Outbox, SharedEvent, WatcherId,
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
