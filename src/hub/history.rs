//! The recent past: the last events published on this node, so a session that reconnects can receive exactly what
//! it missed. Bounded by count; an event that has fallen out means a fresh snapshot, never a silent gap.

use std::{collections::VecDeque, sync::Mutex};

use super::SharedEvent;
use crate::domain::ids::{AppId, ConversationId, Seq};

/// Events kept, across all conversations (about 60 MiB at 600 bytes an event).
pub const HISTORY_EVENTS: usize = 100_000;

pub struct History {
    /// Oldest first. A std mutex: held only to push or to scan, never across an await.
    events: Mutex<VecDeque<SharedEvent>>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        Self::with_capacity(HISTORY_EVENTS)
    }
}

impl History {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { events: Mutex::new(VecDeque::new()), capacity: capacity.max(1) }
    }

    pub fn record(&self, event: &SharedEvent) {
        let mut events = self.events.lock().expect("history lock poisoned");
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(SharedEvent::clone(event));
    }

    /// The retained events of one conversation with a `seq` above `after`, in order. Whether they are complete is
    /// for the caller to judge (they must run without a hole up to the seq it read).
    pub fn since(&self, app_id: &AppId, conversation_id: &ConversationId, after: Seq) -> Vec<SharedEvent> {
        let events = self.events.lock().expect("history lock poisoned");
        events
            .iter()
            .filter(|event| event.seq > after && &event.conversation_id == conversation_id && &event.app_id == app_id)
            .cloned()
            .collect()
    }
}
