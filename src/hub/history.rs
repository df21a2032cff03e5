//! The recent past, in memory: the last events this node delivered, already encoded, so that a session that
//! resumes or fills a hole usually needs no store read. It is a cache in front of the store's event log: what it
//! does not hold is read from there.
//!
//! Bounded in bytes (`--history-bytes`), not in events: one event may be a large message. Events may arrive out of
//! order and twice (a broker does not promise more); each is kept once, by `seq`. Kept per conversation, so a
//! lookup reads only its own conversation's events under the lock every delivery takes.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
};

use super::SharedEvent;
use crate::domain::ids::{AppId, ConversationId, Seq};

/// Bytes of encoded events kept, unless configured otherwise.
pub const DEFAULT_HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// What an event costs beyond its frame: its entries in the maps and the eviction queue.
const EVENT_OVERHEAD_BYTES: usize = 160;

pub struct History {
    /// A std mutex: held only to record or to copy a run of one conversation, never across an await.
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    /// Each conversation's retained events, by seq.
    conversations: HashMap<(AppId, ConversationId), BTreeMap<Seq, SharedEvent>>,
    /// Every retained event in the order it was recorded: the eviction order.
    order: VecDeque<SharedEvent>,
    bytes: usize,
}

impl Default for History {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_HISTORY_BYTES)
    }
}

fn cost(event: &SharedEvent) -> usize {
    event.frame.len() + EVENT_OVERHEAD_BYTES
}

impl History {
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), max_bytes }
    }

    /// Keeps an event, evicting the oldest recorded ones past the byte bound. An event larger than the whole bound
    /// is not kept.
    /// Users' events are not kept: their frames each carry a whole state, so nothing replays them.
    pub fn record(&self, event: &SharedEvent) {
        let Some(conversation_id) = event.conversation_id() else { return };
        if cost(event) > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().expect("history lock poisoned");
        let key = (event.app_id.clone(), conversation_id.clone());
        let events = inner.conversations.entry(key).or_default();
        if events.contains_key(&event.seq) {
            return;
        }
        events.insert(event.seq, SharedEvent::clone(event));
        inner.order.push_back(SharedEvent::clone(event));
        inner.bytes += cost(event);
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.bytes -= cost(&oldest);
            inner.forget(&oldest);
        }
    }

    /// The events of one conversation with `after < seq <= up_to`, in order, if every one of them is held.
    pub fn run(
        &self,
        app_id: &AppId,
        conversation_id: &ConversationId,
        after: Seq,
        up_to: Seq,
    ) -> Option<Vec<SharedEvent>> {
        if up_to <= after {
            return Some(Vec::new());
        }
        let inner = self.inner.lock().expect("history lock poisoned");
        let events = inner.conversations.get(&(app_id.clone(), conversation_id.clone()))?;
        let run: Vec<SharedEvent> = events.range(Seq(after.0 + 1)..=up_to).map(|(_, event)| event.clone()).collect();
        (run.len() as i64 == up_to.0 - after.0).then_some(run)
    }

    /// Whether this event (its conversation and `seq`) is held.
    pub fn holds(&self, event: &SharedEvent) -> bool {
        let Some(conversation_id) = event.conversation_id() else { return false };
        let inner = self.inner.lock().expect("history lock poisoned");
        inner
            .conversations
            .get(&(event.app_id.clone(), conversation_id.clone()))
            .is_some_and(|events| events.contains_key(&event.seq))
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("history lock poisoned").bytes
    }
}

impl Inner {
    fn forget(&mut self, event: &SharedEvent) {
        let Some(conversation_id) = event.conversation_id() else { return };
        let key = (event.app_id.clone(), conversation_id.clone());
        if let Some(events) = self.conversations.get_mut(&key) {
            events.remove(&event.seq);
            if events.is_empty() {
                self.conversations.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::EncodedEvent;

    fn event(conversation: &str, seq: i64, frame_bytes: usize) -> SharedEvent {
        Arc::new(EncodedEvent {
            app_id: AppId::parse("app").unwrap(),
            stream: crate::hub::Stream::Conversation(ConversationId::parse(conversation).unwrap()),
            seq: Seq(seq),
            membership: None,
            frame: tokio_tungstenite::tungstenite::Utf8Bytes::from("x".repeat(frame_bytes)),
        })
    }

    fn seqs(run: Option<Vec<SharedEvent>>) -> Option<Vec<i64>> {
        run.map(|events| events.iter().map(|event| event.seq.0).collect())
    }

    #[test]
    fn a_run_is_given_only_when_whole_whatever_order_and_repeats_it_was_recorded_in() {
        let history = History::default();
        let (app, a) = (AppId::parse("app").unwrap(), ConversationId::parse("a").unwrap());
        for seq in [3, 1, 2, 2, 5] {
            history.record(&event("a", seq, 10));
        }
        assert_eq!(seqs(history.run(&app, &a, Seq(0), Seq(3))), Some(vec![1, 2, 3]));
        assert_eq!(seqs(history.run(&app, &a, Seq(1), Seq(2))), Some(vec![2]));
        assert_eq!(seqs(history.run(&app, &a, Seq(2), Seq(5))), None, "4 is missing");
        assert_eq!(seqs(history.run(&app, &a, Seq(5), Seq(5))), Some(vec![]));
        assert_eq!(seqs(history.run(&app, &ConversationId::parse("b").unwrap(), Seq(0), Seq(1))), None);
    }

    #[test]
    fn the_bound_is_in_bytes_and_the_oldest_recorded_go_first() {
        let per_event = 1000 + EVENT_OVERHEAD_BYTES;
        let history = History::with_max_bytes(3 * per_event);
        let app = AppId::parse("app").unwrap();
        let (a, b) = (ConversationId::parse("a").unwrap(), ConversationId::parse("b").unwrap());
        history.record(&event("a", 1, 1000));
        history.record(&event("b", 1, 1000));
        history.record(&event("a", 2, 1000));
        assert_eq!(history.bytes(), 3 * per_event);
        history.record(&event("a", 3, 1000));
        assert_eq!(history.bytes(), 3 * per_event);
        assert_eq!(seqs(history.run(&app, &a, Seq(1), Seq(3))), Some(vec![2, 3]));
        assert_eq!(seqs(history.run(&app, &a, Seq(0), Seq(3))), None, "a/1 was evicted first");
        assert_eq!(seqs(history.run(&app, &b, Seq(0), Seq(1))), Some(vec![1]));
        // One event larger than the bound is never kept, and evicts nothing.
        history.record(&event("b", 2, 4 * per_event));
        assert_eq!(seqs(history.run(&app, &b, Seq(0), Seq(1))), Some(vec![1]));
        assert_eq!(history.bytes(), 3 * per_event);
    }
}
