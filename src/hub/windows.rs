//! Conversations' newest windows, in memory: the newest messages of a conversation as one read saw them, and who
//! takes part in it, so that the next subscriber to it needs no store read. A cache in front of
//! `Store::newest_window`, on a single node only (`Node::windows`): across nodes a node hears only the events of
//! the conversations its sessions watch, so it could not tell when an entry went stale.
//!
//! An entry is exact until the next event of its conversation (a message, an edit, a reaction, a join, a read),
//! which drops it, or a change of any user of its app (a sender's name is in every window), which outdates every
//! entry of the app. Events are dropped here before the hub fans them out, and a subscription watches before it
//! looks, so a subscriber that got an entry also gets every event after it. A read that began before an event
//! is not kept: `begin` hands out a ticket that the event voids (`fill` checks it).
//!
//! Bounded in bytes (`--window-cache-bytes`); the oldest kept go first.

use std::{
    collections::{hash_map::DefaultHasher, HashMap, HashSet, VecDeque},
    hash::{Hash, Hasher},
    sync::Mutex,
};

use crate::{
    domain::{
        ids::{AppId, ConversationId, UserId},
        message::MessageView,
    },
    store::{MessageWindow, NewestWindow},
};

/// Bytes of windows kept, unless configured otherwise.
pub const DEFAULT_WINDOW_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// A conversation with more participants is not cached: its list would cost more to keep than its reads.
pub const MAX_CACHED_PARTICIPANTS: usize = 1000;
/// Events void tickets by shard of their conversation: a count per shard, not one per conversation ever seen.
const SHARDS: usize = 1024;
/// What a message and a participant cost besides their text: the structures around them.
const MESSAGE_OVERHEAD_BYTES: usize = 512;
const PARTICIPANT_BYTES: usize = 64;

type Key = (AppId, ConversationId);

pub struct WindowCache {
    /// A std mutex: held to look up, copy or drop one entry, never across an await.
    inner: Mutex<Inner>,
    max_bytes: usize,
}

/// Taken before a read that may fill the cache; voided by any event of a conversation in the same shard, or a
/// change of a user of the app, that comes before the fill.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    shard: usize,
    generation: u64,
    users_generation: u64,
}

struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were filled, with the stamp of that fill: the eviction order. A key filled again
    /// or dropped leaves a stale row behind, skipped when it comes up.
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    next_stamp: u64,
    shard_generations: Vec<u64>,
    users_generations: HashMap<AppId, u64>,
}

struct Entry {
    window: MessageWindow,
    participants: HashSet<UserId>,
    users_generation: u64,
    stamp: u64,
    bytes: usize,
}

impl Default for WindowCache {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_WINDOW_CACHE_BYTES)
    }
}

fn shard_of(key: &Key) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % SHARDS as u64) as usize
}

fn cost(window: &MessageWindow, participants: &HashSet<UserId>) -> usize {
    let message = |view: &MessageView| MESSAGE_OVERHEAD_BYTES + view.message.text.len();
    window.messages.iter().map(message).sum::<usize>() + participants.len() * PARTICIPANT_BYTES
}

impl WindowCache {
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        let inner = Inner {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            next_stamp: 0,
            shard_generations: vec![0; SHARDS],
            users_generations: HashMap::new(),
        };
        Self { inner: Mutex::new(inner), max_bytes }
    }

    /// `user`'s newest `limit` messages, if the cache holds enough of them.
    pub fn window(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        limit: usize,
    ) -> Option<MessageWindow> {
        let inner = self.inner.lock().expect("window cache lock poisoned");
        let entry = inner.entries.get(&(app.clone(), conversation.clone()))?;
        if entry.users_generation != inner.users_generation(app) {
            return None;
        }
        let cached = &entry.window;
        if cached.messages.len() < limit && !cached.loaded_all {
            return None;
        }
        if !entry.participants.contains(user) {
            return Some(MessageWindow { seq: cached.seq, participant: false, messages: Vec::new(), loaded_all: true });
        }
        Some(MessageWindow {
            seq: cached.seq,
            participant: true,
            messages: cached.messages.iter().take(limit).cloned().collect(),
            loaded_all: cached.loaded_all && cached.messages.len() <= limit,
        })
    }

    /// Call before a read whose result may be kept.
    pub fn begin(&self, app: &AppId, conversation: &ConversationId) -> Ticket {
        let shard = shard_of(&(app.clone(), conversation.clone()));
        let inner = self.inner.lock().expect("window cache lock poisoned");
        Ticket { shard, generation: inner.shard_generations[shard], users_generation: inner.users_generation(app) }
    }

    /// Keeps what a read begun with `ticket` saw, unless something changed since, or the read cannot be kept (no
    /// participant list). The messages are kept whoever asked, so a non-participant's read fills it too.
    pub fn fill(&self, app: &AppId, conversation: &ConversationId, ticket: Ticket, read: &NewestWindow) {
        let Some(participants) = &read.participants else { return };
        let participants: HashSet<UserId> = participants.iter().cloned().collect();
        let bytes = cost(&read.window, &participants);
        if bytes > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().expect("window cache lock poisoned");
        if inner.shard_generations[ticket.shard] != ticket.generation
            || inner.users_generation(app) != ticket.users_generation
        {
            return;
        }
        let key = (app.clone(), conversation.clone());
        inner.remove(&key);
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.order.push_back((key.clone(), stamp));
        inner.bytes += bytes;
        let entry = Entry {
            window: read.window.clone(),
            participants,
            users_generation: ticket.users_generation,
            stamp,
            bytes,
        };
        inner.entries.insert(key, entry);
        while inner.bytes > self.max_bytes {
            let Some((oldest, stamp)) = inner.order.pop_front() else { break };
            if inner.entries.get(&oldest).is_some_and(|entry| entry.stamp == stamp) {
                inner.remove(&oldest);
            }
        }
    }

    /// An event of the conversation: its entry, and any read of it in flight, are out of date.
    pub fn conversation_changed(&self, app: &AppId, conversation: &ConversationId) {
        let key = (app.clone(), conversation.clone());
        let shard = shard_of(&key);
        let mut inner = self.inner.lock().expect("window cache lock poisoned");
        inner.shard_generations[shard] += 1;
        inner.remove(&key);
    }

    /// A user of the app was created or changed: every window of the app may show them.
    pub fn user_changed(&self, app: &AppId) {
        let mut inner = self.inner.lock().expect("window cache lock poisoned");
        *inner.users_generations.entry(app.clone()).or_default() += 1;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("window cache lock poisoned").bytes
    }
}

impl Inner {
    fn users_generation(&self, app: &AppId) -> u64 {
        self.users_generations.get(app).copied().unwrap_or(0)
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.bytes;
        }
        // Stale rows behind a live front would pile up with every fill while the oldest entry stays: once they
        // outnumber the entries, sweep the whole queue (amortised over the fills that left them).
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(key, stamp)| entries.get(key).is_some_and(|entry| entry.stamp == *stamp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{MessageId, Seq};

    fn app() -> AppId {
        AppId::parse("app").unwrap()
    }

    fn conversation(id: &str) -> ConversationId {
        ConversationId::parse(id).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn view(seq: i64) -> MessageView {
        let mut message = crate::domain::message::tests::stored(None);
        (message.id, message.seq) = (MessageId::from_trusted(format!("m{seq}")), Seq(seq));
        MessageView { message, sender: None, referenced: None }
    }

    /// A read of conversation `c` at `seq` with messages seq..1 newest first, taken part in by alice.
    fn read(seq: i64, loaded_all: bool) -> NewestWindow {
        let messages = (1..=seq).rev().map(view).collect();
        NewestWindow {
            window: MessageWindow { seq: Seq(seq), participant: true, messages, loaded_all },
            participants: Some(vec![user("alice")]),
        }
    }

    fn seqs(window: &MessageWindow) -> Vec<i64> {
        window.messages.iter().map(|view| view.message.seq.0).collect()
    }

    #[test]
    fn a_filled_window_answers_participants_and_outsiders_until_its_conversation_changes() {
        let cache = WindowCache::default();
        let (app, c) = (app(), conversation("c"));
        assert!(cache.window(&app, &c, &user("alice"), 30).is_none());
        let ticket = cache.begin(&app, &c);
        cache.fill(&app, &c, ticket, &read(3, true));
        let window = cache.window(&app, &c, &user("alice"), 30).expect("cached");
        assert_eq!(
            (window.seq, window.participant, seqs(&window), window.loaded_all),
            (Seq(3), true, vec![3, 2, 1], true)
        );
        let window = cache.window(&app, &c, &user("alice"), 2).expect("fewer than cached");
        assert_eq!((seqs(&window), window.loaded_all), (vec![3, 2], false));
        let outsider = cache.window(&app, &c, &user("bob"), 30).expect("cached");
        assert!(!outsider.participant && outsider.messages.is_empty());
        cache.conversation_changed(&app, &conversation("other"));
        assert!(cache.window(&app, &c, &user("alice"), 30).is_some(), "another conversation's event");
        cache.conversation_changed(&app, &c);
        assert!(cache.window(&app, &c, &user("alice"), 30).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn conversations_filled_and_dropped_behind_a_lasting_entry_leave_the_eviction_queue_bounded() {
        let cache = WindowCache::default();
        let (app, lasting, busy) = (app(), conversation("lasting"), conversation("busy"));
        cache.fill(&app, &lasting, cache.begin(&app, &lasting), &read(1, true));
        for _ in 0..10_000 {
            cache.fill(&app, &busy, cache.begin(&app, &busy), &read(1, true));
            cache.conversation_changed(&app, &busy);
        }
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.entries.len(), 1);
        assert!(inner.order.len() <= 2 * inner.entries.len() + 64 + 1, "{} rows", inner.order.len());
        drop(inner);
        assert!(cache.window(&app, &lasting, &user("alice"), 30).is_some(), "the lasting entry stays");
    }

    #[test]
    fn more_than_a_partial_read_holds_is_read_again() {
        let cache = WindowCache::default();
        let (app, c) = (app(), conversation("c"));
        cache.fill(&app, &c, cache.begin(&app, &c), &read(3, false));
        assert!(cache.window(&app, &c, &user("alice"), 3).is_some());
        assert!(cache.window(&app, &c, &user("alice"), 4).is_none(), "older messages exist beyond the cached three");
    }

    #[test]
    fn a_read_that_an_event_or_a_user_change_overtook_is_not_kept() {
        let cache = WindowCache::default();
        let (app, c) = (app(), conversation("c"));
        let ticket = cache.begin(&app, &c);
        cache.conversation_changed(&app, &c);
        cache.fill(&app, &c, ticket, &read(3, true));
        assert!(cache.window(&app, &c, &user("alice"), 30).is_none());
        let ticket = cache.begin(&app, &c);
        cache.user_changed(&app);
        cache.fill(&app, &c, ticket, &read(3, true));
        assert!(cache.window(&app, &c, &user("alice"), 30).is_none());
        // A user change outdates what was kept before it, too.
        cache.fill(&app, &c, cache.begin(&app, &c), &read(3, true));
        cache.user_changed(&app);
        assert!(cache.window(&app, &c, &user("alice"), 30).is_none());
        // A read without a participant list (too many participants) is never kept.
        let mut unlisted = read(3, true);
        unlisted.participants = None;
        cache.fill(&app, &c, cache.begin(&app, &c), &unlisted);
        assert!(cache.window(&app, &c, &user("alice"), 30).is_none());
    }

    #[test]
    fn the_bound_is_in_bytes_and_the_oldest_filled_go_first() {
        let one = cost(&read(2, true).window, &[user("alice")].into_iter().collect());
        let cache = WindowCache::with_max_bytes(2 * one);
        let app = app();
        for id in ["a", "b", "a", "c"] {
            let c = conversation(id);
            cache.fill(&app, &c, cache.begin(&app, &c), &read(2, true));
        }
        assert_eq!(cache.bytes(), 2 * one);
        assert!(cache.window(&app, &conversation("b"), &user("alice"), 30).is_none(), "b was the oldest fill");
        assert!(cache.window(&app, &conversation("a"), &user("alice"), 30).is_some(), "a was filled again");
        assert!(cache.window(&app, &conversation("c"), &user("alice"), 30).is_some());
    }
}
