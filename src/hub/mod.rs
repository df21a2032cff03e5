//! The local fan-out: which sessions on this node watch which key (a conversation, or a user for membership
//! changes), and the synchronous `publish` that hands one shared encoded event to each of their outboxes.
//!
//! `publish` is a plain `fn`: it cannot await, so no DashMap guard is ever held across an await point. A full
//! outbox marks a slow consumer: it is marked slow (its session closes and resynchronises) and it is removed after
//! the loop, never waited for. Entries are removed when their last watcher leaves.
//!
//! Sessions do not use the hub directly: they go through `node::Node`, which also tells the `broker` when this
//! node starts and stops watching a key, and takes what the broker delivers.

pub mod broker;
pub mod history;
pub mod node;
pub mod outbox;
pub mod presence;
pub mod windows;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use dashmap::{mapref::entry::Entry, DashMap};

use crate::domain::ids::{AppId, ConversationId, Seq, UserId};
pub use node::Node;
pub use outbox::{Outbox, OutboxError};

/// What the hub and the broker route by. Conversation events go to the conversation's key; membership changes
/// also go to the user's key, so a session learns that its user joined a conversation it could not see yet; a
/// user's own changes (their profile) go to the user's `Profile` key. Typing signals go to the conversation's
/// `Typing` key, and a user's connecting and disconnecting to their `Online` key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HubKey {
    Conversation { app_id: AppId, conversation_id: ConversationId },
    User { app_id: AppId, user_id: UserId },
    Profile { app_id: AppId, user_id: UserId },
    Typing { app_id: AppId, conversation_id: ConversationId },
    Online { app_id: AppId, user_id: UserId },
}

/// What an event is about. For a conversation's and a user's own events, whose sequence `seq` counts; the
/// others have no `seq` of their own (it is 0): a read is a change of the conversation's read state (which
/// subscriptions read again; the user's stream logs it), typing and presence are ephemeral, never logged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Conversation(ConversationId),
    User(UserId),
    Read(ConversationId),
    /// `typing`: the user marked themselves typing (the frame is their UserSnapshot), or stopped (they sent).
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        typing: bool,
    },
    /// The user's presence may have changed on some node.
    Online(UserId),
}

/// One event, encoded once: `frame` holds the JSON event frame that every subscriber receives unchanged.
/// The other fields let a session route it without parsing the frame.
#[derive(Debug)]
pub struct EncodedEvent {
    pub app_id: AppId,
    pub stream: Stream,
    pub seq: Seq,
    pub membership: Option<Membership>,
    pub frame: tokio_tungstenite::tungstenite::Utf8Bytes,
}

/// Events that change who may see a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Joined(UserId),
    Left(UserId),
    ConversationDeleted,
}

impl EncodedEvent {
    /// The conversation of a conversation's event.
    pub fn conversation_id(&self) -> Option<&ConversationId> {
        match &self.stream {
            Stream::Conversation(conversation_id) => Some(conversation_id),
            _ => None,
        }
    }
}

/// Cloning shares the bytes: the hub hands the same allocation to every outbox.
pub type SharedEvent = Arc<EncodedEvent>;

/// One session's registration on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatcherId(u64);

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    watchers: DashMap<HubKey, Vec<(WatcherId, Outbox)>>,
    next_id: AtomicU64,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Hub {
    pub fn with_metrics(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self { inner: Arc::new(HubInner { metrics: Some(metrics), ..Default::default() }) }
    }

    /// Registers an outbox for the events of a key. `first` runs when the key had no watcher, while the key's
    /// entry is locked, so that it and `last` of `unwatch` run in the order the entry changed.
    pub fn watch(&self, key: HubKey, outbox: Outbox, first: impl FnOnce(&HubKey)) -> WatcherId {
        let id = WatcherId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        match self.inner.watchers.entry(key) {
            Entry::Occupied(mut entry) => entry.get_mut().push((id, outbox)),
            Entry::Vacant(entry) => {
                first(entry.key());
                entry.insert(vec![(id, outbox)]);
            }
        }
        id
    }

    /// Removes a watcher, and the key's entry once it has none left; `last` runs then, under the entry's lock.
    pub fn unwatch(&self, key: &HubKey, id: WatcherId, last: impl FnOnce(&HubKey)) {
        if let Entry::Occupied(mut entry) = self.inner.watchers.entry(key.clone()) {
            entry.get_mut().retain(|(watcher, _)| *watcher != id);
            if entry.get().is_empty() {
                last(entry.key());
                entry.remove();
            }
        }
    }

    /// Hands the event to every watcher of the key without waiting. Watchers found full or gone are removed
    /// afterwards (`last` runs if that empties the key). Returns how many took it.
    pub fn publish(&self, key: &HubKey, event: &SharedEvent, last: impl Fn(&HubKey)) -> usize {
        let mut delivered = 0;
        let mut gone = Vec::new();
        if let Some(watchers) = self.inner.watchers.get(key) {
            for (id, outbox) in watchers.iter() {
                match outbox.try_send(Arc::clone(event)) {
                    Ok(()) => delivered += 1,
                    Err(OutboxError::Full) => {
                        outbox.cancel_slow();
                        gone.push(*id);
                    }
                    Err(OutboxError::Closed) => gone.push(*id),
                }
            }
        }
        if let Some(metrics) = &self.inner.metrics {
            metrics.deliveries.inc_by(delivered as u64);
        }
        // The read guard above is dropped before these lookups: DashMap deadlocks on re-entry.
        for id in gone {
            self.unwatch(key, id, &last);
        }
        delivered
    }

    /// How many keys have at least one watcher.
    pub fn is_watched(&self, key: &HubKey) -> bool {
        self.inner.watchers.contains_key(key)
    }

    pub fn n_keys(&self) -> usize {
        self.inner.watchers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(conversation: &str) -> HubKey {
        HubKey::Conversation {
            app_id: AppId::parse("app").unwrap(),
            conversation_id: ConversationId::parse(conversation).unwrap(),
        }
    }

    fn event(frame: &'static str) -> SharedEvent {
        Arc::new(EncodedEvent {
            app_id: AppId::parse("app").unwrap(),
            stream: Stream::Conversation(ConversationId::parse("one").unwrap()),
            seq: Seq(1),
            membership: None,
            frame: tokio_tungstenite::tungstenite::Utf8Bytes::from_static(frame),
        })
    }

    #[test]
    fn publish_reaches_every_watcher_of_that_key_only() {
        let hub = Hub::default();
        let (a, mut a_rx) = outbox::channel(4);
        let (b, mut b_rx) = outbox::channel(4);
        let (c, mut c_rx) = outbox::channel(4);
        hub.watch(key("one"), a, |_| {});
        hub.watch(key("one"), b, |_| {});
        hub.watch(key("two"), c, |_| {});
        let frame = event("{}");
        assert_eq!(hub.publish(&key("one"), &frame, |_| {}), 2);
        assert!(Arc::ptr_eq(&a_rx.try_recv().unwrap(), &frame), "the same allocation reaches every outbox");
        assert!(Arc::ptr_eq(&b_rx.try_recv().unwrap(), &frame));
        assert!(c_rx.try_recv().is_none());
    }

    #[test]
    fn a_full_outbox_is_cancelled_and_dropped_while_others_keep_receiving() {
        let hub = Hub::default();
        let (slow, _slow_rx) = outbox::channel(1);
        let shell_side = slow.clone();
        let (fast, mut fast_rx) = outbox::channel(8);
        hub.watch(key("one"), slow, |_| {});
        hub.watch(key("one"), fast, |_| {});
        for _ in 0..3 {
            hub.publish(&key("one"), &event("x"), |_| panic!("the fast watcher is still there"));
        }
        assert!(shell_side.is_slow());
        assert_eq!(hub.publish(&key("one"), &event("y"), |_| {}), 1);
        let mut received = 0;
        while fast_rx.try_recv().is_some() {
            received += 1;
        }
        assert_eq!(received, 4);
    }

    #[test]
    fn first_and_last_run_when_a_key_gains_its_first_watcher_and_loses_its_last() {
        let hub = Hub::default();
        let calls = std::sync::Mutex::new(Vec::new());
        let (a, _a_rx) = outbox::channel(1);
        let (b, _b_rx) = outbox::channel(1);
        let first = |_: &HubKey| calls.lock().unwrap().push("first");
        let id_a = hub.watch(key("one"), a, first);
        let id_b = hub.watch(key("one"), b, first);
        assert_eq!(hub.n_keys(), 1);
        let last = |_: &HubKey| calls.lock().unwrap().push("last");
        hub.unwatch(&key("one"), id_a, last);
        hub.unwatch(&key("one"), id_b, last);
        assert_eq!(hub.n_keys(), 0);
        assert_eq!(*calls.lock().unwrap(), vec!["first", "last"]);
    }
}
