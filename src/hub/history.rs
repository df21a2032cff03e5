//! The recent past: the last events published on this node, so a session that reconnects can receive exactly what
//! it missed. Bounded by count; an event that has fallen out means a fresh snapshot, never a silent gap.
//!
//! Kept per conversation, so a resume reads only its own conversation's events: the writer records every event
//! under the same lock, and must not wait while a reconnect storm scans.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use super::SharedEvent;
use crate::domain::ids::{AppId, ConversationId, Seq};

/// Events kept, across all conversations (about 60 MiB at 600 bytes an event).
pub const HISTORY_EVENTS: usize = 100_000;

pub struct History {
    /// A std mutex: held only to record or to copy one conversation's tail, never across an await.
    inner: Mutex<Inner>,
    capacity: usize,
}

/// What the history holds of one conversation after some seq.
#[derive(Clone, Debug, Default)]
pub struct Recent {
    pub events: Vec<SharedEvent>,
    /// The newest seq recorded for the conversation; `None` when nothing of it is retained (a restart, or all of it
    /// evicted). Events committed after it have not been published yet, so a session that already watches the
    /// conversation will receive them.
    pub last_recorded: Option<Seq>,
}

#[derive(Default)]
struct Inner {
    /// Each conversation's retained events, oldest first.
    conversations: HashMap<AppId, HashMap<ConversationId, VecDeque<SharedEvent>>>,
    /// Every retained event, oldest first: the eviction order.
    order: VecDeque<SharedEvent>,
}

impl Default for History {
    fn default() -> Self {
        Self::with_capacity(HISTORY_EVENTS)
    }
}

impl History {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), capacity: capacity.max(1) }
    }

    pub fn record(&self, event: &SharedEvent) {
        let mut inner = self.inner.lock().expect("history lock poisoned");
        if inner.order.len() == self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.forget(&oldest);
            }
        }
        inner.order.push_back(SharedEvent::clone(event));
        inner
            .conversations
            .entry(event.app_id.clone())
            .or_default()
            .entry(event.conversation_id.clone())
            .or_default()
            .push_back(SharedEvent::clone(event));
    }

    /// The retained events of one conversation with a `seq` above `after`, in order, and the last `seq` recorded for
    /// it. Whether they are complete is for the caller to judge.
    pub fn since(&self, app_id: &AppId, conversation_id: &ConversationId, after: Seq) -> Recent {
        let inner = self.inner.lock().expect("history lock poisoned");
        let Some(events) = inner.conversations.get(app_id).and_then(|conversations| conversations.get(conversation_id))
        else {
            return Recent::default();
        };
        // Events are in seq order: take the tail above `after`.
        let newer = events.iter().rev().take_while(|event| event.seq > after).count();
        Recent {
            events: events.iter().skip(events.len() - newer).cloned().collect(),
            last_recorded: events.back().map(|event| event.seq),
        }
    }
}

impl Inner {
    /// Drops the oldest event of its conversation, which is `event`: both queues are oldest first.
    fn forget(&mut self, event: &SharedEvent) {
        let Some(conversations) = self.conversations.get_mut(&event.app_id) else { return };
        if let Some(events) = conversations.get_mut(&event.conversation_id) {
            events.pop_front();
            if events.is_empty() {
                conversations.remove(&event.conversation_id);
            }
        }
        if conversations.is_empty() {
            self.conversations.remove(&event.app_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::EncodedEvent;

    fn event(conversation: &str, seq: i64) -> SharedEvent {
        Arc::new(EncodedEvent {
            app_id: AppId::parse("app").unwrap(),
            conversation_id: ConversationId::parse(conversation).unwrap(),
            seq: Seq(seq),
            membership: None,
            frame: axum::extract::ws::Utf8Bytes::from_static("{}"),
        })
    }

    fn seqs(recent: Recent) -> Vec<i64> {
        recent.events.iter().map(|event| event.seq.0).collect()
    }

    #[test]
    fn since_returns_one_conversations_events_after_a_seq_and_evicts_the_oldest_overall() {
        let history = History::with_capacity(4);
        let (app, a, b) =
            (AppId::parse("app").unwrap(), ConversationId::parse("a").unwrap(), ConversationId::parse("b").unwrap());
        for (conversation, seq) in [("a", 1), ("b", 1), ("a", 2), ("a", 3)] {
            history.record(&event(conversation, seq));
        }
        assert_eq!(seqs(history.since(&app, &a, Seq(1))), vec![2, 3]);
        assert_eq!(seqs(history.since(&app, &b, Seq(0))), vec![1]);
        // Full: the oldest event overall (a/1) goes first, then b/1.
        history.record(&event("b", 2));
        assert_eq!(seqs(history.since(&app, &a, Seq(0))), vec![2, 3]);
        history.record(&event("a", 4));
        assert_eq!(seqs(history.since(&app, &b, Seq(0))), vec![2]);
        assert_eq!(history.since(&app, &b, Seq(5)).last_recorded, Some(Seq(2)));
        assert!(history.since(&app, &ConversationId::parse("c").unwrap(), Seq(0)).last_recorded.is_none());
    }
}
