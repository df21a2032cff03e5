//! The local fan-out: which sessions on this node listen to which conversation, and the synchronous `publish`
//! that hands one encoded frame to each of their outboxes.
//!
//! `publish` is a plain `fn`: it cannot await, so no DashMap guard is ever held across an await point. A full
//! outbox marks a slow consumer: its session is cancelled (it closes and resynchronises) and it is removed after
//! the loop, never waited for. Entries are removed when their last subscriber leaves.
//! Cross-node delivery goes through `broker`, which feeds each node's hub.

pub mod broker;
pub mod outbox;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use dashmap::DashMap;

use crate::domain::ids::{AppId, ConversationId};
pub use outbox::{EncodedFrame, Outbox, OutboxError};

/// A conversation, qualified by its app: the hub's and the broker's routing key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub app_id: AppId,
    pub conversation_id: ConversationId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    conversations: DashMap<ConversationKey, Vec<(SubscriberId, Outbox)>>,
    next_id: AtomicU64,
}

impl Hub {
    /// Registers an outbox for a conversation's events.
    pub fn subscribe(&self, key: ConversationKey, outbox: Outbox) -> SubscriberId {
        let id = SubscriberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.inner.conversations.entry(key).or_default().push((id, outbox));
        id
    }

    /// Removes a subscriber, and the conversation's entry once it has none left.
    pub fn unsubscribe(&self, key: &ConversationKey, id: SubscriberId) {
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

    /// Hands the frame to every subscriber of the conversation without waiting. Returns how many took it.
    pub fn publish(&self, key: &ConversationKey, frame: &EncodedFrame) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        if let Some(subscribers) = self.inner.conversations.get(key) {
            for (id, outbox) in subscribers.iter() {
                match outbox.try_send(frame.clone()) {
                    Ok(()) => delivered += 1,
                    Err(OutboxError::Full) => {
                        outbox.cancel_slow();
                        slow.push(*id);
                    }
                    Err(OutboxError::Closed) => slow.push(*id),
                }
            }
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

    fn key(conversation: &str) -> ConversationKey {
        ConversationKey {
            app_id: AppId::parse("app").unwrap(),
            conversation_id: ConversationId::parse(conversation).unwrap(),
        }
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
        let frame = EncodedFrame::from_static(b"{}");
        assert_eq!(hub.publish(&key("one"), &frame), 2);
        assert_eq!(a_rx.try_recv().unwrap(), frame);
        assert_eq!(b_rx.try_recv().unwrap(), frame);
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
            hub.publish(&key("one"), &EncodedFrame::from_static(b"x"));
        }
        assert!(slow_cancelled.is_cancelled());
        assert_eq!(hub.publish(&key("one"), &EncodedFrame::from_static(b"y")), 1);
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
