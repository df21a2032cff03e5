//! The client's copy of one subscription's window, updated from snapshot, page and event frames.
//!
//! Each message remembers the `seq` its state was read at (`as_of`): an event changes a message only when the
//! event is newer, so a page read after an event, and the event delivered after the page, never apply twice.

use serde_json::Value;

use super::{MessageSnapshot, ReactionSnapshot, SubscriptionState};

/// Where an event falls in a window's live stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The one owed next: apply it.
    Next,
    /// Already applied.
    Duplicate,
    /// Events are missing before it: resubscribe from the last one applied.
    Hole,
}

#[derive(Default)]
pub struct Window {
    /// Newest first. `None` is the null snapshot (not a participant).
    messages: Option<Vec<Entry>>,
    loaded_all: bool,
    /// The last `seq` of the live stream this window reflects (a snapshot's or an event's): where a resume starts.
    live_seq: Option<i64>,
}

struct Entry {
    snapshot: MessageSnapshot,
    as_of: i64,
}

impl Window {
    /// A whole new window (subscribe, join, leave).
    pub fn reset(&mut self, seq: i64, messages: Option<Vec<MessageSnapshot>>, loaded_all: bool) {
        self.live_seq = Some(seq);
        self.messages =
            messages.map(|messages| messages.into_iter().map(|snapshot| Entry { snapshot, as_of: seq }).collect());
        self.loaded_all = loaded_all;
    }

    /// Where an event with this `seq` falls in the live stream. The server sends every seq of a conversation to a
    /// window that is a list, so anything but the next one is a duplicate or a hole (`proto/PROTOCOL.md`).
    pub fn place(&self, seq: i64) -> Place {
        match (&self.messages, self.live_seq) {
            (Some(_), Some(live)) if seq <= live => Place::Duplicate,
            (Some(_), Some(live)) if seq > live + 1 => Place::Hole,
            _ => Place::Next,
        }
    }

    /// Every event frame of the conversation moves the live stream on, whether or not it changes the window.
    pub fn observe_seq(&mut self, seq: i64) {
        self.live_seq = Some(self.live_seq.map_or(seq, |live| live.max(seq)));
    }

    /// What to send as `resume` after a reconnect; `None` asks for a fresh window.
    pub fn resume_point(&self) -> Option<serde_json::Value> {
        let messages = self.messages.as_ref()?;
        let from_seq = self.live_seq?;
        let oldest = messages.last().map(|entry| entry.snapshot.seq);
        Some(serde_json::json!({ "fromSeq": from_seq, "oldestSeq": oldest, "loadedAll": self.loaded_all }))
    }

    /// Older messages for the end of the window.
    pub fn append_page(&mut self, seq: i64, page: Vec<MessageSnapshot>, loaded_all: bool) {
        let Some(messages) = &mut self.messages else { return };
        for snapshot in page {
            if !messages.iter().any(|entry| entry.snapshot.id == snapshot.id) {
                messages.push(Entry { snapshot, as_of: seq });
            }
        }
        messages.sort_by_key(|entry| std::cmp::Reverse(entry.snapshot.seq));
        self.loaded_all = loaded_all;
    }

    /// Applies an event frame's `event` at `seq`. Returns whether the window changed.
    pub fn apply_event(&mut self, seq: i64, event: &Value, me: &str) -> bool {
        let Some(messages) = &mut self.messages else { return false };
        let message_id = event["messageId"].as_str().unwrap_or_default();
        match event["kind"].as_str().unwrap_or_default() {
            "messageCreated" => {
                let Ok(snapshot) = serde_json::from_value::<MessageSnapshot>(event["message"].clone()) else {
                    return false;
                };
                if messages.iter().any(|entry| entry.snapshot.id == snapshot.id) {
                    return false;
                }
                let position =
                    messages.iter().position(|entry| entry.snapshot.seq < snapshot.seq).unwrap_or(messages.len());
                if position == messages.len() && !self.loaded_all && !messages.is_empty() {
                    // Older than everything loaded: it belongs to the part not loaded yet.
                    return false;
                }
                messages.insert(position, Entry { snapshot, as_of: seq });
                true
            }
            "messageEdited" => {
                let Ok(edited) = serde_json::from_value::<MessageSnapshot>(event["message"].clone()) else {
                    return false;
                };
                let mut changed = false;
                for entry in messages.iter_mut() {
                    if entry.snapshot.id == edited.id && seq > entry.as_of {
                        let reactions = std::mem::take(&mut entry.snapshot.reactions);
                        entry.snapshot = MessageSnapshot { reactions, ..edited.clone() };
                        entry.as_of = seq;
                        changed = true;
                    } else if entry.snapshot.referenced_message.as_ref().is_some_and(|r| r.id == edited.id) {
                        entry.snapshot.referenced_message = Some(edited.as_referenced());
                        changed = true;
                    }
                }
                changed
            }
            "messageDeleted" => {
                let before = messages.len();
                messages.retain(|entry| entry.snapshot.id != message_id);
                for entry in messages.iter_mut() {
                    if entry.snapshot.referenced_message.as_ref().is_some_and(|r| r.id == message_id) {
                        entry.snapshot.referenced_message = None;
                    }
                }
                messages.len() != before
            }
            "allMessagesDeleted" => {
                messages.clear();
                self.loaded_all = true;
                true
            }
            kind @ ("reactionAdded" | "reactionRemoved") => {
                let emoji = event["emoji"].as_str().unwrap_or_default();
                let by_me = event["userId"].as_str() == Some(me);
                let Some(entry) = messages.iter_mut().find(|entry| entry.snapshot.id == message_id) else {
                    return false;
                };
                if seq <= entry.as_of {
                    return false;
                }
                entry.as_of = seq;
                let reactions = &mut entry.snapshot.reactions;
                let existing = reactions.iter().position(|reaction| reaction.emoji == emoji);
                match (kind, existing) {
                    ("reactionAdded", Some(index)) => {
                        reactions[index].count += 1;
                        reactions[index].current_user_reacted |= by_me;
                    }
                    ("reactionAdded", None) => reactions.push(ReactionSnapshot {
                        emoji: emoji.to_owned(),
                        count: 1,
                        current_user_reacted: by_me,
                    }),
                    (_, Some(index)) => {
                        reactions[index].count = reactions[index].count.saturating_sub(1);
                        if by_me {
                            reactions[index].current_user_reacted = false;
                        }
                        if reactions[index].count == 0 {
                            reactions.remove(index);
                        }
                    }
                    (_, None) => {}
                }
                true
            }
            _ => false,
        }
    }

    pub fn state(&self) -> SubscriptionState {
        SubscriptionState::Active {
            latest_snapshot: self
                .messages
                .as_ref()
                .map(|messages| messages.iter().map(|entry| entry.snapshot.clone()).collect()),
            loaded_all: self.loaded_all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_snapshot_only_the_next_seq_is_next() {
        let mut window = Window::default();
        assert_eq!(window.place(9), Place::Next, "nothing to compare with yet");
        window.reset(5, Some(Vec::new()), true);
        assert_eq!(window.place(5), Place::Duplicate);
        assert_eq!(window.place(6), Place::Next);
        assert_eq!(window.place(7), Place::Hole);
        window.observe_seq(6);
        assert_eq!(window.place(7), Place::Next);
        window.reset(8, None, true);
        assert_eq!(window.place(12), Place::Next, "a null window sees only what concerns its user");
    }
}
