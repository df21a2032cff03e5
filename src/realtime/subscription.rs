//! One `subscribeMessages` subscription's state machine, without sockets, clocks or the store (sans-IO): its
//! window, the reads it waits for, the events it holds, and the order it forwards them in.
//!
//! The rules that make a window exact:
//! - **The seam.** A subscription watches the conversation *before* it reads its first page, holds every event
//!   that arrives while a read is in flight, and after the read drops what the page already reflects
//!   (`seq <= page.seq`) and forwards the rest in order.
//! - **No hole.** Every event of a conversation reaches every subscription whose snapshot is a list, so the events
//!   it forwards are contiguous: after `last_seq` comes `last_seq + 1`. An event beyond that is held, the missing
//!   range is fetched from the store's event log (`Output::FetchEvents`), and only then does anything go on; if
//!   the range cannot be read any more, the window is read afresh and sent marked `resumed: false`. Duplicates
//!   (the user's key and the conversation's, a broker that delivers twice) are dropped by `seq`.
//! - **Resume.** A client that reconnects names the last `seq` it saw; the first read then also fetches the
//!   events after it, and `decide_resume` says whether they replay exactly.
//!
//! The session (`session.rs`) owns the subscriptions and allocates fetch ids; start at `Subscription::start`.

use std::collections::{BTreeMap, VecDeque};

use super::{
    error::RealtimeError,
    frames::RequestId,
    output::{FetchId, Output, Watched},
};
use crate::{
    domain::ids::{ConversationId, Seq, UserId},
    hub::{Membership, SharedEvent},
    store::MessageWindow,
};

/// Events one subscription may hold (while a read is in flight, or behind a hole); more means the session cannot
/// keep up and it is closed as slow, like a full outbox.
pub const MAX_HELD_EVENTS: usize = 4096;
/// The most events a resume or a hole repair replays; a client that missed more gets a fresh snapshot, which is
/// also cheaper for it to apply.
pub const MAX_REPLAY_EVENTS: i64 = 1000;

/// Where a reconnecting client's window stood: the last `seq` it saw and its window's far end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub from_seq: Seq,
    pub oldest: Option<Seq>,
    pub loaded_all: bool,
}

/// What a resumed subscription does once its first read is back.
#[derive(Debug)]
pub enum ResumeDecision {
    /// The client's window stands; these events (the ones after `from_seq`, up to the read) follow in order.
    Replay(Vec<SharedEvent>),
    /// Send a fresh snapshot marked `resumed: false`.
    Fresh,
}

/// Decides a resume from what the first read saw: the window at `window.seq`, and `replay`, the events after
/// `from_seq` up to `window.seq` if they could all be read (`None` if not). Exact replay needs a participant, a
/// `from_seq` the conversation has reached, and every event in between, without a hole.
pub fn decide_resume(resume: &Resume, window: &MessageWindow, replay: Option<Vec<SharedEvent>>) -> ResumeDecision {
    if !window.participant || resume.from_seq > window.seq {
        return ResumeDecision::Fresh;
    }
    let Some(events) = replay else { return ResumeDecision::Fresh };
    if Seq::is_whole_run(events.iter().map(|event| event.seq), resume.from_seq, window.seq) {
        ResumeDecision::Replay(events)
    } else {
        ResumeDecision::Fresh
    }
}

/// What a subscription needs from its session while it handles an input.
pub struct Context<'a> {
    pub user_id: &'a UserId,
    pub outputs: &'a mut VecDeque<Output>,
    /// Allocates fetch ids and remembers which conversation each belongs to.
    pub new_fetch: &'a mut dyn FnMut(&ConversationId) -> FetchId,
}

/// The subscription cannot keep up with its conversation: the session must close as slow.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyHeld;

pub struct Subscription {
    conversation_id: ConversationId,
    /// The window size asked for, reused when the window is read again (after a join, or to repair).
    limit: usize,
    active: bool,
    watching: bool,
    /// The highest seq the client's view reflects: the last snapshot's or the last forwarded event's.
    last_seq: Seq,
    /// `Some` while the user takes part (the snapshot is a list), `None` while it is null.
    window: Option<Bounds>,
    /// A window or page read in flight.
    read: Option<Read>,
    /// A fetch of missing events in flight.
    gap: Option<FetchId>,
    /// A hole could not be filled: read the window afresh once no read is in flight.
    resync: bool,
    /// Events waiting to be forwarded in order, by seq.
    held: BTreeMap<Seq, SharedEvent>,
    /// What the client asked to resume from, until the first read answers.
    resume: Option<Resume>,
}

struct Bounds {
    /// The seq of the oldest message loaded: `loadMore` reads before it.
    oldest: Option<Seq>,
    loaded_all: bool,
}

enum Read {
    /// `resumed` is what the snapshot says about a resume: `Some(false)` after a failed resume or a repair.
    Snapshot { fetch: FetchId, waiting: Vec<RequestId>, resumed: Option<bool> },
    /// `fetched` is how many this read asks for; `wanted` is the most any coalesced `loadMore` asked for.
    Page { fetch: FetchId, fetched: usize, wanted: usize, waiting: Vec<RequestId> },
}

impl Read {
    fn fetch(&self) -> FetchId {
        match self {
            Read::Snapshot { fetch, .. } | Read::Page { fetch, .. } => *fetch,
        }
    }

    fn waiting(self) -> Vec<RequestId> {
        match self {
            Read::Snapshot { waiting, .. } | Read::Page { waiting, .. } => waiting,
        }
    }
}

impl Subscription {
    /// A new subscription: it watches the conversation, then reads its window. Watch first, read second: nothing
    /// committed after the read can be missed.
    pub fn start(
        context: &mut Context<'_>,
        id: RequestId,
        conversation_id: ConversationId,
        limit: usize,
        resume: Option<Resume>,
    ) -> Self {
        let mut subscription = Self {
            conversation_id,
            limit,
            active: false,
            watching: true,
            last_seq: Seq(0),
            window: None,
            read: None,
            gap: None,
            resync: false,
            held: BTreeMap::new(),
            resume,
        };
        context.outputs.push_back(Output::Watch(Watched::Conversation(subscription.conversation_id.clone())));
        subscription.read_snapshot(context, vec![id], None);
        subscription
    }

    fn read_snapshot(&mut self, context: &mut Context<'_>, waiting: Vec<RequestId>, resumed: Option<bool>) {
        let fetch = (context.new_fetch)(&self.conversation_id);
        self.read = Some(Read::Snapshot { fetch, waiting, resumed });
        context.outputs.push_back(Output::Fetch {
            fetch,
            conversation_id: self.conversation_id.clone(),
            before: None,
            limit: self.limit,
            replay_after: self.resume.map(|resume| resume.from_seq),
        });
    }

    pub fn load_more(&mut self, context: &mut Context<'_>, id: RequestId, count: usize) {
        match &mut self.read {
            // Concurrent loadMore calls coalesce: one read, extended to the largest count asked for.
            Some(Read::Page { wanted, waiting, .. }) => {
                *wanted = (*wanted).max(count);
                waiting.push(id);
            }
            Some(Read::Snapshot { .. }) => {
                context.outputs.push_back(Output::Error { id, error: RealtimeError::NotActive });
            }
            None if !self.active => context.outputs.push_back(Output::Error { id, error: RealtimeError::NotActive }),
            None => match &self.window {
                Some(bounds) if !bounds.loaded_all => {
                    let before = bounds.oldest;
                    self.read_page(context, before, count, count, vec![id]);
                }
                // Nothing more to load: a null snapshot, or everything is loaded already.
                _ => context.outputs.push_back(Output::Ok { id }),
            },
        }
    }

    fn read_page(
        &mut self,
        context: &mut Context<'_>,
        before: Option<Seq>,
        fetched: usize,
        wanted: usize,
        waiting: Vec<RequestId>,
    ) {
        let fetch = (context.new_fetch)(&self.conversation_id);
        self.read = Some(Read::Page { fetch, fetched, wanted, waiting });
        context.outputs.push_back(Output::Fetch {
            fetch,
            conversation_id: self.conversation_id.clone(),
            before,
            limit: fetched,
            replay_after: None,
        });
    }

    /// The subscription ends at the client's request: it stops watching, and requests still waiting for a read
    /// are answered (every request gets exactly one reply).
    pub fn unsubscribe(self, outputs: &mut VecDeque<Output>) {
        if self.watching {
            outputs.push_back(Output::Unwatch(Watched::Conversation(self.conversation_id.clone())));
        }
        for id in self.read.map(Read::waiting).unwrap_or_default() {
            outputs.push_back(Output::Error { id, error: RealtimeError::Unsubscribed });
        }
    }

    /// Whether `fetch` is one this subscription waits for.
    pub fn waits_for(&self, fetch: FetchId) -> bool {
        self.read.as_ref().map(Read::fetch) == Some(fetch) || self.gap == Some(fetch)
    }

    /// A window or page read came back. With a resume, `replay` holds the events after `fromSeq` up to the read,
    /// if they could all be read.
    pub fn handle_window(
        &mut self,
        context: &mut Context<'_>,
        window: MessageWindow,
        replay: Option<Vec<SharedEvent>>,
    ) {
        match self.read.take() {
            Some(Read::Snapshot { waiting, resumed, .. }) => {
                self.handle_snapshot(context, window, replay, waiting, resumed)
            }
            Some(Read::Page { fetched, wanted, waiting, .. }) => {
                self.handle_page(context, window, fetched, wanted, waiting)
            }
            None => {}
        }
    }

    fn handle_snapshot(
        &mut self,
        context: &mut Context<'_>,
        window: MessageWindow,
        replay: Option<Vec<SharedEvent>>,
        waiting: Vec<RequestId>,
        mut resumed: Option<bool>,
    ) {
        self.active = true;
        if let Some(resume) = self.resume.take() {
            match decide_resume(&resume, &window, replay) {
                ResumeDecision::Replay(events) => {
                    self.last_seq = resume.from_seq;
                    self.window = Some(Bounds { oldest: resume.oldest, loaded_all: resume.loaded_all });
                    context.outputs.push_back(Output::Resumed {
                        conversation_id: self.conversation_id.clone(),
                        from_seq: resume.from_seq,
                        seq: window.seq,
                    });
                    context.outputs.extend(waiting.into_iter().map(|id| Output::Ok { id }));
                    for event in events {
                        self.held.entry(event.seq).or_insert(event);
                    }
                    self.drain(context);
                    return;
                }
                ResumeDecision::Fresh => resumed = Some(false),
            }
        }
        self.last_seq = window.seq;
        if window.participant {
            let oldest = window.messages.last().map(|view| view.message.seq);
            self.window = Some(Bounds { oldest, loaded_all: window.loaded_all });
        } else {
            self.window = None;
            if self.watching {
                // Someone who may not read the conversation must not receive its events.
                self.watching = false;
                context.outputs.push_back(Output::Unwatch(Watched::Conversation(self.conversation_id.clone())));
            }
        }
        context.outputs.push_back(Output::Snapshot { conversation_id: self.conversation_id.clone(), window, resumed });
        context.outputs.extend(waiting.into_iter().map(|id| Output::Ok { id }));
        self.drain(context);
    }

    fn handle_page(
        &mut self,
        context: &mut Context<'_>,
        window: MessageWindow,
        fetched: usize,
        wanted: usize,
        waiting: Vec<RequestId>,
    ) {
        if window.participant {
            if let Some(bounds) = &mut self.window {
                if let Some(last) = window.messages.last() {
                    bounds.oldest = Some(last.message.seq);
                }
                bounds.loaded_all = window.loaded_all;
            }
        }
        let more = wanted.saturating_sub(fetched);
        let loaded_all = !window.participant || window.loaded_all;
        if window.participant {
            context.outputs.push_back(Output::Page { conversation_id: self.conversation_id.clone(), window });
        }
        if more > 0 && !loaded_all {
            let before = self.window.as_ref().and_then(|bounds| bounds.oldest);
            self.read_page(context, before, more, more, waiting);
        } else {
            context.outputs.extend(waiting.into_iter().map(|id| Output::Ok { id }));
            self.drain(context);
        }
    }

    /// A fetch of missing events came back: `events` is the whole range asked for, or `None` if it could not be
    /// read (pruned from the log, or the store failed).
    pub fn handle_events(&mut self, context: &mut Context<'_>, events: Option<Vec<SharedEvent>>) {
        self.gap = None;
        match events {
            Some(events) => {
                for event in events.into_iter().filter(|event| event.seq > self.last_seq) {
                    self.held.entry(event.seq).or_insert(event);
                }
                // A range that came back whole fills the hole; if it did not, read the window afresh rather than
                // ask again.
                if self.held.first_key_value().is_some_and(|(&seq, _)| seq.0 > self.last_seq.0 + 1) {
                    self.resync = true;
                }
            }
            None => self.resync = true,
        }
        self.drain(context);
    }

    /// A read failed (the store was unavailable). Returns whether the subscription ended (in the error state).
    pub fn handle_fetch_failed(&mut self, context: &mut Context<'_>, fetch: FetchId) -> bool {
        if self.gap == Some(fetch) {
            self.handle_events(context, None);
            return false;
        }
        match self.read.take() {
            Some(Read::Snapshot { waiting, .. }) => {
                // Without a window the subscription cannot go on: it ends in the error state.
                if self.watching {
                    context.outputs.push_back(Output::Unwatch(Watched::Conversation(self.conversation_id.clone())));
                }
                for id in waiting {
                    context.outputs.push_back(Output::Error { id, error: RealtimeError::StoreUnavailable });
                }
                context.outputs.push_back(Output::SubscriptionError {
                    conversation_id: self.conversation_id.clone(),
                    error: RealtimeError::StoreUnavailable,
                });
                true
            }
            Some(Read::Page { waiting, .. }) => {
                for id in waiting {
                    context.outputs.push_back(Output::Error { id, error: RealtimeError::StoreUnavailable });
                }
                self.drain(context);
                false
            }
            None => false,
        }
    }

    /// An event from the hub: of this conversation, or a membership change of this user.
    pub fn handle_event(&mut self, context: &mut Context<'_>, event: &SharedEvent) -> Result<(), TooManyHeld> {
        if event.seq <= self.last_seq || self.held.contains_key(&event.seq) {
            // Already reflected or held: delivered twice (user and conversation keys, or by the broker).
            return Ok(());
        }
        // The common case: nothing in flight or waiting, and the event is the one owed next.
        let next = self.window.is_none() || event.seq.0 == self.last_seq.0 + 1;
        if next && self.held.is_empty() && self.read.is_none() && self.gap.is_none() && !self.resync {
            self.route(context, event);
            return Ok(());
        }
        if self.held.len() >= MAX_HELD_EVENTS {
            return Err(TooManyHeld);
        }
        self.held.insert(event.seq, SharedEvent::clone(event));
        self.drain(context);
        Ok(())
    }

    /// Forwards held events in order for as long as nothing is in flight and the next one is the one owed;
    /// starts the fetch that fills a hole, or the read that repairs the window.
    fn drain(&mut self, context: &mut Context<'_>) {
        while self.read.is_none() && self.gap.is_none() {
            if self.resync {
                self.resync = false;
                self.held.retain(|&seq, _| seq > self.last_seq);
                self.read_snapshot(context, Vec::new(), Some(false));
                return;
            }
            let Some((&seq, _)) = self.held.first_key_value() else { return };
            if seq <= self.last_seq {
                self.held.pop_first();
                continue;
            }
            // A participant's window receives every seq; only a null one sees just the user's membership events.
            if self.window.is_some() && seq.0 > self.last_seq.0 + 1 {
                if seq.0 - self.last_seq.0 - 1 > MAX_REPLAY_EVENTS {
                    self.resync = true;
                    continue;
                }
                let fetch = (context.new_fetch)(&self.conversation_id);
                self.gap = Some(fetch);
                context.outputs.push_back(Output::FetchEvents {
                    fetch,
                    conversation_id: self.conversation_id.clone(),
                    after: self.last_seq,
                    up_to: Seq(seq.0 - 1),
                });
                return;
            }
            let (_, event) = self.held.pop_first().expect("looked at above");
            self.route(context, &event);
        }
    }

    fn route(&mut self, context: &mut Context<'_>, event: &SharedEvent) {
        self.last_seq = event.seq;
        let participant = self.window.is_some();
        match &event.membership {
            Some(Membership::Joined(joined)) if joined == context.user_id && !participant => {
                if !self.watching {
                    self.watching = true;
                    context.outputs.push_back(Output::Watch(Watched::Conversation(self.conversation_id.clone())));
                }
                // Events held meanwhile that the read reflects are dropped after it.
                self.read_snapshot(context, Vec::new(), None);
            }
            Some(Membership::Left(left)) if left == context.user_id && participant => self.lose_access(context, event),
            Some(Membership::ConversationDeleted) if participant => self.lose_access(context, event),
            _ if participant => context.outputs.push_back(Output::Forward(SharedEvent::clone(event))),
            _ => {}
        }
    }

    fn lose_access(&mut self, context: &mut Context<'_>, event: &SharedEvent) {
        self.window = None;
        if self.watching {
            self.watching = false;
            context.outputs.push_back(Output::Unwatch(Watched::Conversation(self.conversation_id.clone())));
        }
        let window = MessageWindow { seq: event.seq, participant: false, messages: Vec::new(), loaded_all: true };
        context.outputs.push_back(Output::Snapshot {
            conversation_id: self.conversation_id.clone(),
            window,
            resumed: None,
        });
    }
}
