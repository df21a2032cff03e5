//! The local fan-out: which sessions on this node listen to which key (a conversation, or a user for membership
//! changes), and the synchronous `publish` that hands one shared encoded event to each of their outboxes.
//!
//! `publish` is a plain `fn`: it cannot await, so no DashMap guard is ever held across an await point. A full
//! outbox marks a slow consumer: its session is cancelled (it closes and resynchronises) and it is removed after
//! the loop, never waited for. Entries are removed when their last subscriber leaves.
//! Cross-node delivery goes through `broker`, which feeds each node's hub.

pub mod broker;
pub mod history;
pub mod outbox;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use dashmap::DashMap;

use crate::domain::ids::{AppId, ConversationId, Seq, UserId};
pub use outbox::{Outbox, OutboxError};

/// What the hub and the broker route by. Conversation events go to the conversation's key; membership changes
/// also go to the user's key, so a session learns that its user joined a conversation it could not see yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HubKey {
    Conversation { app_id: AppId, conversation_id: ConversationId },
    User { app_id: AppId, user_id: UserId },
}

/// One event, encoded once: `frame` holds the JSON event frame that every subscriber receives unchanged.
/// The other fields let a session route it without parsing the frame.
#[derive(Debug)]
pub struct EncodedEvent {
    pub app_id: AppId,
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub membership: Option<Membership>,
    pub frame: axum::extract::ws::Utf8Bytes,
}

/// Events that change who may see a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Joined(UserId),
    Left(UserId),
    ConversationDeleted,
}

/// Cloning shares the bytes: the hub hands the same allocation to every outbox.
pub type SharedEvent = Arc<EncodedEvent>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    conversations: DashMap<HubKey, Vec<(SubscriberId, Outbox)>>,
    next_id: AtomicU64,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Hub {
    pub fn with_metrics(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self { inner: Arc::new(HubInner { metrics: Some(metrics), ..Default::default() }) }
    }

    /// Registers an outbox for the events of a key.
    pub fn subscribe(&self, key: HubKey, outbox: Outbox) -> SubscriberId {
        let id = SubscriberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.inner.conversations.entry(key).or_default().push((id, outbox));
        id
    }

    /// Removes a subscriber, and the conversation's entry once it has none left.
    pub fn unsubscribe(&self, key: &HubKey, id: SubscriberId) {
        let now_empty = match self.inner.conversations.get_mut(key) {
            Some(mut subscribers) => {
                subscribers.retain(|(subscriber, _)| *subscriber != id);
                subscribers.is_empty()
            }
            None => false,
        };
        // The guard above is dropped before this second lookup: DashMap deadlocks on re-entry.
        if now_empty {
            self.inner.conversations.remove_if(key, |_, subscribers| subscribers.is_empty());
        }
    }

    /// Hands the event to every subscriber of the key without waiting. Returns how many took it.
    pub fn publish(&self, key: &HubKey, event: &SharedEvent) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        if let Some(subscribers) = self.inner.conversations.get(key) {
            for (id, outbox) in subscribers.iter() {
                match outbox.try_send(Arc::clone(event)) {
                    Ok(()) => delivered += 1,
                    Err(OutboxError::Full) => {
                        outbox.cancel_slow();
                        slow.push(*id);
                    }
                    Err(OutboxError::Closed) => slow.push(*id),
                }
            }
        }
        if let Some(metrics) = &self.inner.metrics {
            metrics.deliveries.inc_by(delivered as u64);
        }
        for id in slow {
            self.unsubscribe(key, id);
        }
        delivered
    }

    pub fn n_conversations(&self) -> usize {
        self.inner.conversations.len()
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
            conversation_id: ConversationId::parse("one").unwrap(),
            seq: Seq(1),
            membership: None,
            frame: axum::extract::ws::Utf8Bytes::from_static(frame),
        })
    }

    #[test]
    fn publish_reaches_every_subscriber_of_that_conversation_only() {
        let hub = Hub::default();
        let (a, mut a_rx) = outbox::channel(4);
        let (b, mut b_rx) = outbox::channel(4);
        let (c, mut c_rx) = outbox::channel(4);
        hub.subscribe(key("one"), a);
        hub.subscribe(key("one"), b);
        hub.subscribe(key("two"), c);
        let frame = event("{}");
        assert_eq!(hub.publish(&key("one"), &frame), 2);
        assert!(Arc::ptr_eq(&a_rx.try_recv().unwrap(), &frame), "the same allocation reaches every outbox");
        assert!(Arc::ptr_eq(&b_rx.try_recv().unwrap(), &frame));
        assert!(c_rx.try_recv().is_err());
    }

    #[test]
    fn a_full_outbox_is_cancelled_and_dropped_while_others_keep_receiving() {
        let hub = Hub::default();
        let (slow, _slow_rx) = outbox::channel(1);
        let slow_cancelled = slow.cancelled_token();
        let (fast, mut fast_rx) = outbox::channel(8);
        hub.subscribe(key("one"), slow);
        hub.subscribe(key("one"), fast);
        for _ in 0..3 {
            hub.publish(&key("one"), &event("x"));
        }
        assert!(slow_cancelled.is_cancelled());
        assert_eq!(hub.publish(&key("one"), &event("y")), 1);
        let mut received = 0;
        while fast_rx.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, 4);
    }

    #[test]
    fn the_entry_goes_when_its_last_subscriber_leaves() {
        let hub = Hub::default();
        let (a, _a_rx) = outbox::channel(1);
        let id = hub.subscribe(key("one"), a);
        assert_eq!(hub.n_conversations(), 1);
        hub.unsubscribe(&key("one"), id);
        assert_eq!(hub.n_conversations(), 0);
    }
}
