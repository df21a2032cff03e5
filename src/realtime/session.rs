//! One WebSocket session's protocol logic, without sockets, clocks or the store (sans-IO).
//!
//! The shell (`socket.rs`) feeds it requests, hub events, store answers and the time, and carries out what
//! `poll_output` asks for: send a frame, fetch a window page, watch or unwatch a conversation on the hub, ping,
//! close. Start with `Session::handle_request`.
//!
//! The seam rule that makes windows exact: a subscription watches the conversation on the hub *before* it reads
//! its first page, holds every event that arrives while a read is in flight, and after the read drops the held
//! events the page already reflects (`seq <= page.seq`) and forwards the rest in order. Every event is forwarded
//! at most once (`seq` only grows), so a client sees each change exactly once, in order.
//!
//! Resuming: a client that reconnects names the last `seq` it saw. If the recent history (plus what arrived during
//! the read) holds every event after it up to the read's `seq`, the session sends `resumed` and exactly those
//! events; otherwise a fresh snapshot marked `resumed: false`.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use crate::{
    domain::ids::{ConversationId, Seq, UserId},
    hub::{history::Recent, Membership, SharedEvent},
    realtime::frames::RequestId,
    store::MessageWindow,
};

/// Messages in a new window unless the client asks for another `limit` (seed 004).
pub const DEFAULT_WINDOW_MESSAGES: usize = 30;
/// The largest `limit` and `loadMore` count.
pub const MAX_PAGE_MESSAGES: usize = 100;
/// Subscriptions one session may hold, unless configured otherwise (`--subscriptions-per-connection`).
pub const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1000;
/// Events one subscription may hold while a read is in flight; more means the session cannot keep up and it is
/// closed as slow, like a full outbox.
pub const MAX_HELD_EVENTS: usize = 4096;
/// How often the server pings an otherwise quiet connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// A connection that sends nothing (not even a pong) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchId(u64);

/// What a client asks of its subscriptions (writes go straight from the shell to the store).
/// Where a reconnecting client's window stood: the last `seq` it saw and its window's far end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub from_seq: Seq,
    pub oldest: Option<Seq>,
    pub loaded_all: bool,
}

#[derive(Debug)]
pub enum Request {
    SubscribeMessages {
        id: RequestId,
        conversation_id: ConversationId,
        limit: Option<u32>,
        resume: Option<Resume>,
    },
    LoadMore {
        id: RequestId,
        conversation_id: ConversationId,
        count: Option<u32>,
    },
    Unsubscribe {
        id: RequestId,
        conversation_id: ConversationId,
    },
    /// A verified token for this session's user; `expires_at` is when it stops being valid.
    TokenRefreshed {
        id: RequestId,
        expires_at: Option<Instant>,
    },
}

#[derive(Debug)]
pub enum Output {
    /// Send this event frame as it is.
    Forward(SharedEvent),
    /// Send a whole window (subscribe, join, leave); not a participant means a null snapshot. `resumed` is
    /// `Some(false)` when the client asked to resume and could not.
    Snapshot {
        conversation_id: ConversationId,
        window: MessageWindow,
        resumed: Option<bool>,
    },
    /// The client's window stands; the events after `from_seq` up to `seq` follow.
    Resumed {
        conversation_id: ConversationId,
        from_seq: Seq,
        seq: Seq,
    },
    /// Send older messages for the end of the window.
    Page {
        conversation_id: ConversationId,
        window: MessageWindow,
    },
    Ok {
        id: RequestId,
    },
    Error {
        id: RequestId,
        error: SessionError,
    },
    /// The subscription ended in the error state.
    SubscriptionError {
        conversation_id: ConversationId,
        error: SessionError,
    },
    /// Read a page of the window; answer with `handle_window` or `handle_fetch_failed`. With `history_after`, also
    /// pass the recent events after that seq.
    Fetch {
        fetch: FetchId,
        conversation_id: ConversationId,
        before: Option<Seq>,
        limit: usize,
        history_after: Option<Seq>,
    },
    /// Start or stop receiving the conversation's events from the hub.
    Watch(ConversationId),
    Unwatch(ConversationId),
    Ping,
    Close(CloseReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    AlreadySubscribed,
    NotSubscribed,
    NotActive,
    TooManySubscriptions,
    InvalidCount(&'static str),
    TokenExpired,
    StoreUnavailable,
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::AlreadySubscribed => "ALREADY_SUBSCRIBED",
            SessionError::NotSubscribed => "NOT_SUBSCRIBED",
            SessionError::NotActive => "SUBSCRIPTION_NOT_ACTIVE",
            SessionError::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            SessionError::InvalidCount(_) => "INVALID_REQUEST",
            SessionError::TokenExpired => "TOKEN_EXPIRED",
            SessionError::StoreUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            SessionError::AlreadySubscribed => "this session already subscribes to that conversation".into(),
            SessionError::NotSubscribed => "this session does not subscribe to that conversation".into(),
            SessionError::NotActive => "the subscription has no snapshot yet; wait for it before loadMore".into(),
            SessionError::TooManySubscriptions => {
                format!("a session holds at most {MAX_SUBSCRIPTIONS_PER_SESSION} subscriptions")
            }
            SessionError::InvalidCount(field) => format!("{field} must be from 1 to {MAX_PAGE_MESSAGES}"),
            SessionError::TokenExpired => "the token expired and was not replaced".into(),
            SessionError::StoreUnavailable => "the store is unavailable; subscribe again".into(),
        }
    }
}

/// Why the server closes a connection, with the close codes of `proto/PROTOCOL.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The outbox overflowed: the client did not read fast enough. Reconnect and resubscribe.
    SlowConsumer,
    TokenExpired,
    IdleTimeout,
    ShuttingDown,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::ShuttingDown => 1001,
            CloseReason::SlowConsumer => 4000,
            CloseReason::TokenExpired => 4001,
            CloseReason::IdleTimeout => 4002,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            CloseReason::ShuttingDown => "server shutting down",
            CloseReason::SlowConsumer => "slow consumer: reconnect and resubscribe",
            CloseReason::TokenExpired => "token expired",
            CloseReason::IdleTimeout => "idle timeout",
        }
    }
}

pub struct Session {
    user_id: UserId,
    subscriptions: HashMap<ConversationId, Subscription>,
    fetches: HashMap<FetchId, ConversationId>,
    next_fetch: u64,
    outputs: VecDeque<Output>,
    token_expires_at: Option<Instant>,
    max_subscriptions: usize,
    last_activity: Instant,
    next_ping: Instant,
    closed: bool,
}

struct Subscription {
    /// The window size asked for, reused when the window is read again (after a join).
    limit: usize,
    active: bool,
    watching: bool,
    /// The highest seq the client's view reflects: the last snapshot's or the last forwarded event's.
    last_seq: Seq,
    /// `Some` while the user takes part (the snapshot is a list), `None` while it is null.
    window: Option<Bounds>,
    in_flight: Option<InFlight>,
    /// Events that arrived while a read was in flight.
    held: Vec<SharedEvent>,
    /// What the client asked to resume from, until the first read answers.
    resume: Option<Resume>,
}

struct Bounds {
    /// The seq of the oldest message loaded: `loadMore` reads before it.
    oldest: Option<Seq>,
    loaded_all: bool,
}

enum InFlight {
    Snapshot {
        fetch: FetchId,
        waiting: Vec<RequestId>,
    },
    /// `fetched` is how many this read asks for; `wanted` is the most any coalesced `loadMore` asked for.
    Page {
        fetch: FetchId,
        fetched: usize,
        wanted: usize,
        waiting: Vec<RequestId>,
    },
}

impl InFlight {
    fn fetch(&self) -> FetchId {
        match self {
            InFlight::Snapshot { fetch, .. } | InFlight::Page { fetch, .. } => *fetch,
        }
    }
}

impl Session {
    pub fn new(user_id: UserId, token_expires_at: Option<Instant>, now: Instant) -> Self {
        Self::with_max_subscriptions(user_id, token_expires_at, now, MAX_SUBSCRIPTIONS_PER_SESSION)
    }

    pub fn with_max_subscriptions(
        user_id: UserId,
        token_expires_at: Option<Instant>,
        now: Instant,
        max_subscriptions: usize,
    ) -> Self {
        Self {
            max_subscriptions,
            user_id,
            subscriptions: HashMap::new(),
            fetches: HashMap::new(),
            next_fetch: 0,
            outputs: VecDeque::new(),
            token_expires_at,
            last_activity: now,
            next_ping: now + PING_INTERVAL,
            closed: false,
        }
    }

    /// Any frame from the client (including a pong) proves it is alive.
    pub fn handle_activity(&mut self, now: Instant) {
        self.last_activity = now;
    }

    pub fn handle_request(&mut self, request: Request) {
        if self.closed {
            return;
        }
        match request {
            Request::SubscribeMessages { id, conversation_id, limit, resume } => {
                self.subscribe(id, conversation_id, limit, resume)
            }
            Request::LoadMore { id, conversation_id, count } => self.load_more(id, conversation_id, count),
            Request::Unsubscribe { id, conversation_id } => {
                if let Some(subscription) = self.subscriptions.remove(&conversation_id) {
                    if let Some(in_flight) = &subscription.in_flight {
                        self.fetches.remove(&in_flight.fetch());
                    }
                    if subscription.watching {
                        self.outputs.push_back(Output::Unwatch(conversation_id));
                    }
                }
                self.outputs.push_back(Output::Ok { id });
            }
            Request::TokenRefreshed { id, expires_at } => {
                self.token_expires_at = expires_at;
                self.outputs.push_back(Output::Ok { id });
            }
        }
    }

    fn subscribe(
        &mut self,
        id: RequestId,
        conversation_id: ConversationId,
        limit: Option<u32>,
        resume: Option<Resume>,
    ) {
        let Some(limit) = page_size(limit) else {
            self.outputs.push_back(Output::Error { id, error: SessionError::InvalidCount("limit") });
            return;
        };
        if self.subscriptions.contains_key(&conversation_id) {
            self.outputs.push_back(Output::Error { id, error: SessionError::AlreadySubscribed });
            return;
        }
        if self.subscriptions.len() >= self.max_subscriptions {
            self.outputs.push_back(Output::Error { id, error: SessionError::TooManySubscriptions });
            return;
        }
        let subscription = Subscription {
            limit,
            active: false,
            watching: true,
            last_seq: Seq(0),
            window: None,
            in_flight: None,
            held: Vec::new(),
            resume,
        };
        self.subscriptions.insert(conversation_id.clone(), subscription);
        // Watch first, read second: nothing committed after the read can be missed.
        self.outputs.push_back(Output::Watch(conversation_id.clone()));
        self.read_snapshot(&conversation_id, vec![id]);
    }

    fn read_snapshot(&mut self, conversation_id: &ConversationId, waiting: Vec<RequestId>) {
        let fetch = self.new_fetch(conversation_id);
        let subscription = self.subscriptions.get_mut(conversation_id).expect("caller checked");
        subscription.in_flight = Some(InFlight::Snapshot { fetch, waiting });
        let limit = subscription.limit;
        let history_after = subscription.resume.map(|resume| resume.from_seq);
        self.outputs.push_back(Output::Fetch {
            fetch,
            conversation_id: conversation_id.clone(),
            before: None,
            limit,
            history_after,
        });
    }

    fn new_fetch(&mut self, conversation_id: &ConversationId) -> FetchId {
        let fetch = FetchId(self.next_fetch);
        self.next_fetch += 1;
        self.fetches.insert(fetch, conversation_id.clone());
        fetch
    }

    fn load_more(&mut self, id: RequestId, conversation_id: ConversationId, count: Option<u32>) {
        let Some(count) = page_size(count) else {
            self.outputs.push_back(Output::Error { id, error: SessionError::InvalidCount("count") });
            return;
        };
        let Some(subscription) = self.subscriptions.get_mut(&conversation_id) else {
            self.outputs.push_back(Output::Error { id, error: SessionError::NotSubscribed });
            return;
        };
        match &mut subscription.in_flight {
            // Concurrent loadMore calls coalesce: one read, extended to the largest count asked for.
            Some(InFlight::Page { wanted, waiting, .. }) => {
                *wanted = (*wanted).max(count);
                waiting.push(id);
            }
            Some(InFlight::Snapshot { .. }) => {
                self.outputs.push_back(Output::Error { id, error: SessionError::NotActive });
            }
            None if !subscription.active => {
                self.outputs.push_back(Output::Error { id, error: SessionError::NotActive });
            }
            None => match &subscription.window {
                Some(bounds) if !bounds.loaded_all => {
                    let before = bounds.oldest;
                    let fetch = FetchId(self.next_fetch);
                    self.next_fetch += 1;
                    self.fetches.insert(fetch, conversation_id.clone());
                    subscription.in_flight =
                        Some(InFlight::Page { fetch, fetched: count, wanted: count, waiting: vec![id] });
                    self.outputs.push_back(Output::Fetch {
                        fetch,
                        conversation_id,
                        before,
                        limit: count,
                        history_after: None,
                    });
                }
                // Nothing more to load: a null snapshot, or everything is loaded already.
                _ => self.outputs.push_back(Output::Ok { id }),
            },
        }
    }

    /// A page read for `fetch` came back.
    /// With a resume, `history` holds the recent events the fetch asked for.
    pub fn handle_window(&mut self, fetch: FetchId, window: MessageWindow, history: Recent) {
        let Some(conversation_id) = self.fetches.remove(&fetch) else { return };
        let Some(subscription) = self.subscriptions.get_mut(&conversation_id) else { return };
        if subscription.in_flight.as_ref().map(InFlight::fetch) != Some(fetch) {
            return;
        }
        match subscription.in_flight.take().expect("checked above") {
            InFlight::Snapshot { waiting, .. } => {
                let resume = subscription.resume.take();
                if let Some(resume) = resume.filter(|_| window.participant) {
                    // What the client missed, from history or held meanwhile, must run without a hole from `fromSeq`:
                    // to the seq the read saw, or at least to the last one history has recorded. Events committed
                    // after that are not published yet, and will arrive here since this session already watches.
                    let available: BTreeMap<Seq, SharedEvent> = history
                        .events
                        .iter()
                        .chain(subscription.held.iter())
                        .filter(|event| event.seq > resume.from_seq && event.seq <= window.seq)
                        .map(|event| (event.seq, event.clone()))
                        .collect();
                    let run_end = Seq(resume.from_seq.0 + available.len() as i64);
                    let without_hole = available.keys().next_back().is_none_or(|&last| last == run_end);
                    let reaches = run_end == window.seq || history.last_recorded.is_some_and(|last| last <= run_end);
                    if resume.from_seq <= window.seq && without_hole && reaches {
                        let missed = available;
                        subscription.active = true;
                        subscription.last_seq = resume.from_seq;
                        subscription.window = Some(Bounds { oldest: resume.oldest, loaded_all: resume.loaded_all });
                        self.outputs.push_back(Output::Resumed {
                            conversation_id: conversation_id.clone(),
                            from_seq: resume.from_seq,
                            seq: window.seq,
                        });
                        self.outputs.extend(waiting.into_iter().map(|id| Output::Ok { id }));
                        for event in missed.values() {
                            self.route(&conversation_id, event);
                        }
                        self.replay_held(&conversation_id);
                        return;
                    }
                }
                let resumed = resume.map(|_| false);
                subscription.active = true;
                subscription.last_seq = window.seq;
                if window.participant {
                    let oldest = window.messages.last().map(|view| view.message.seq);
                    subscription.window = Some(Bounds { oldest, loaded_all: window.loaded_all });
                } else {
                    subscription.window = None;
                    if subscription.watching {
                        // Someone who may not read the conversation must not receive its events.
                        subscription.watching = false;
                        self.outputs.push_back(Output::Unwatch(conversation_id.clone()));
                    }
                }
                self.outputs.push_back(Output::Snapshot { conversation_id: conversation_id.clone(), window, resumed });
                self.outputs.extend(waiting.into_iter().map(|id| Output::Ok { id }));
                self.replay_held(&conversation_id);
            }
            InFlight::Page { fetched, wanted, waiting, .. } => {
                if window.participant {
                    if let Some(bounds) = &mut subscription.window {
                        if let Some(last) = window.messages.last() {
                            bounds.oldest = Some(last.message.seq);
                        }
                        bounds.loaded_all = window.loaded_all;
                    }
                }
                let more = wanted.saturating_sub(fetched);
                let loaded_all = !window.participant || window.loaded_all;
                if window.participant {
                    self.outputs.push_back(Output::Page { conversation_id: conversation_id.clone(), window });
                }
                if more > 0 && !loaded_all {
                    let before = subscription.window.as_ref().and_then(|bounds| bounds.oldest);
                    let fetch = FetchId(self.next_fetch);
                    self.next_fetch += 1;
                    self.fetches.insert(fetch, conversation_id.clone());
                    subscription.in_flight = Some(InFlight::Page { fetch, fetched: more, wanted: more, waiting });
                    self.outputs.push_back(Output::Fetch {
                        fetch,
                        conversation_id,
                        before,
                        limit: more,
                        history_after: None,
                    });
                } else {
                    self.outputs.extend(waiting.into_iter().map(|id| Output::Ok { id }));
                    self.replay_held(&conversation_id);
                }
            }
        }
    }

    /// A page read failed (the store was unavailable).
    pub fn handle_fetch_failed(&mut self, fetch: FetchId) {
        let Some(conversation_id) = self.fetches.remove(&fetch) else { return };
        let Some(subscription) = self.subscriptions.get_mut(&conversation_id) else { return };
        match subscription.in_flight.take() {
            Some(InFlight::Snapshot { waiting, .. }) => {
                // Without a window the subscription cannot go on: it ends in the error state.
                let subscription = self.subscriptions.remove(&conversation_id).expect("looked up above");
                if subscription.watching {
                    self.outputs.push_back(Output::Unwatch(conversation_id.clone()));
                }
                for id in waiting {
                    self.outputs.push_back(Output::Error { id, error: SessionError::StoreUnavailable });
                }
                self.outputs
                    .push_back(Output::SubscriptionError { conversation_id, error: SessionError::StoreUnavailable });
            }
            Some(InFlight::Page { waiting, .. }) => {
                for id in waiting {
                    self.outputs.push_back(Output::Error { id, error: SessionError::StoreUnavailable });
                }
                self.replay_held(&conversation_id);
            }
            None => {}
        }
    }

    fn replay_held(&mut self, conversation_id: &ConversationId) {
        let Some(subscription) = self.subscriptions.get_mut(conversation_id) else { return };
        let held = std::mem::take(&mut subscription.held);
        for (index, event) in held.iter().enumerate() {
            self.route(conversation_id, event);
            // Routing may start a new read (a join); the rest waits for it.
            let subscription = self.subscriptions.get_mut(conversation_id).expect("routing does not remove");
            if subscription.in_flight.is_some() {
                subscription.held.extend(held[index + 1..].iter().cloned());
                return;
            }
        }
    }

    /// An event from the hub: from a watched conversation, or a membership change of this user.
    pub fn handle_event(&mut self, event: &SharedEvent) {
        if self.closed {
            return;
        }
        let Some(subscription) = self.subscriptions.get_mut(&event.conversation_id) else { return };
        if subscription.in_flight.is_some() {
            if subscription.held.len() >= MAX_HELD_EVENTS {
                self.close(CloseReason::SlowConsumer);
                return;
            }
            subscription.held.push(event.clone());
            return;
        }
        let conversation_id = event.conversation_id.clone();
        self.route(&conversation_id, event);
    }

    fn route(&mut self, conversation_id: &ConversationId, event: &SharedEvent) {
        let user_id = &self.user_id;
        let subscription = self.subscriptions.get_mut(conversation_id).expect("caller checked");
        if event.seq <= subscription.last_seq {
            // Already reflected by the snapshot, or delivered twice (conversation and user keys).
            return;
        }
        subscription.last_seq = event.seq;
        let participant = subscription.window.is_some();
        match &event.membership {
            Some(Membership::Joined(joined)) if joined == user_id && !participant => {
                if !subscription.watching {
                    subscription.watching = true;
                    self.outputs.push_back(Output::Watch(conversation_id.clone()));
                }
                self.read_snapshot(conversation_id, Vec::new());
            }
            Some(Membership::Left(left)) if left == user_id && participant => self.lose_access(conversation_id, event),
            Some(Membership::ConversationDeleted) if participant => self.lose_access(conversation_id, event),
            _ if participant => self.outputs.push_back(Output::Forward(event.clone())),
            _ => {}
        }
    }

    fn lose_access(&mut self, conversation_id: &ConversationId, event: &SharedEvent) {
        let subscription = self.subscriptions.get_mut(conversation_id).expect("caller checked");
        subscription.window = None;
        if subscription.watching {
            subscription.watching = false;
            self.outputs.push_back(Output::Unwatch(conversation_id.clone()));
        }
        let window = MessageWindow { seq: event.seq, participant: false, messages: Vec::new(), loaded_all: true };
        self.outputs.push_back(Output::Snapshot { conversation_id: conversation_id.clone(), window, resumed: None });
    }

    /// The hub found this session's outbox full.
    pub fn handle_slow(&mut self) {
        self.close(CloseReason::SlowConsumer);
    }

    pub fn handle_shutdown(&mut self) {
        self.close(CloseReason::ShuttingDown);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.token_expires_at.is_some_and(|expires_at| now >= expires_at) {
            let conversations: Vec<_> = self.subscriptions.keys().cloned().collect();
            for conversation_id in conversations {
                self.outputs
                    .push_back(Output::SubscriptionError { conversation_id, error: SessionError::TokenExpired });
            }
            self.close(CloseReason::TokenExpired);
            return;
        }
        if now >= self.last_activity + IDLE_TIMEOUT {
            self.close(CloseReason::IdleTimeout);
            return;
        }
        if now >= self.next_ping {
            self.next_ping = now + PING_INTERVAL;
            self.outputs.push_back(Output::Ping);
        }
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let idle = self.last_activity + IDLE_TIMEOUT;
        let mut next = idle.min(self.next_ping);
        if let Some(expires_at) = self.token_expires_at {
            next = next.min(expires_at);
        }
        Some(next)
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.outputs.push_back(Output::Close(reason));
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

fn page_size(requested: Option<u32>) -> Option<usize> {
    match requested {
        None => Some(DEFAULT_WINDOW_MESSAGES),
        Some(n) if (1..=MAX_PAGE_MESSAGES as u32).contains(&n) => Some(n as usize),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests;
