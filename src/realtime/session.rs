//! One WebSocket session's protocol logic, without sockets, clocks or the store (sans-IO): its subscriptions
//! (`subscription.rs`), the token's expiry, pings and the idle timeout, and closing.
//!
//! The shell (`socket.rs`) feeds it requests, hub events, store answers and the time, and carries out what
//! `poll_output` asks for: send a frame, read a window page or a run of logged events, watch or unwatch a
//! conversation on the hub, ping, close. Start with `Session::handle_request`.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

pub use super::output::{CloseReason, FetchId, Output, Violation};
use super::{
    error::{RealtimeError, MAX_PAGE_MESSAGES},
    frames::RequestId,
    state::{State, Topic},
    state_subscription::StateSubscription,
    subscription::{Context, Resume, Subscription, TooManyHeld},
    typing_subscription::{TypingSubscription, DEFAULT_TYPING_TIMEOUT},
    user_subscription::UserSubscription,
};
use crate::{
    domain::{
        filter::ConversationFilter,
        ids::{ConversationId, Seq, UserId},
        user::User,
    },
    hub::{SharedEvent, Stream},
    limits::DEFAULT_SUBSCRIPTIONS_PER_CONNECTION,
    store::{ConversationState, MessageWindow},
};

/// Messages in a new window unless the client asks for another `limit` (seed 004).
pub const DEFAULT_WINDOW_MESSAGES: usize = 30;
/// How often the server pings an otherwise quiet connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// A connection that sends nothing (not even a pong) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a request keeps a session without subscriptions counting as connected (the Data API's "made a request
/// in the last few seconds").
pub const DEFAULT_REQUEST_LINGER: Duration = Duration::from_secs(5);

/// What a client asks of its subscriptions (writes go straight from the shell to the store).
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
    SubscribeUser {
        id: RequestId,
        user_id: UserId,
    },
    UnsubscribeUser {
        id: RequestId,
        user_id: UserId,
    },
    /// `subscribeConversation`, `subscribeParticipants` (with `limit`), `subscribeOnline` or
    /// `subscribeConversations` (with `limit` and a filter).
    SubscribeState {
        id: RequestId,
        topic: Topic,
        limit: Option<u32>,
        filter: Option<Arc<ConversationFilter>>,
    },
    /// `loadMoreParticipants`, `loadMoreConversations`.
    LoadMoreState {
        id: RequestId,
        topic: Topic,
        count: Option<u32>,
    },
    UnsubscribeState {
        id: RequestId,
        topic: Topic,
    },
    SubscribeTyping {
        id: RequestId,
        conversation_id: ConversationId,
    },
    UnsubscribeTyping {
        id: RequestId,
        conversation_id: ConversationId,
    },
    /// A verified token for this session's user; `expires_at` is when it stops being valid.
    TokenRefreshed {
        id: RequestId,
        expires_at: Option<Instant>,
    },
}

pub struct Session {
    user_id: UserId,
    /// Boxed: the map allocates room for several at once, and most sessions hold one or two.
    subscriptions: HashMap<ConversationId, Box<Subscription>>,
    fetches: HashMap<FetchId, ConversationId>,
    /// Made by the first subscription of another kind: most sessions only subscribe to messages, and six empty
    /// maps would take about 300 bytes in each.
    others: Option<Box<Others>>,
    typing_timeout: Duration,
    request_linger: Duration,
    /// Until when the client's last request makes the session count as connected.
    requested_until: Option<Instant>,
    next_fetch: u64,
    outputs: VecDeque<Output>,
    token_expires_at: Option<Instant>,
    max_subscriptions: usize,
    last_activity: Instant,
    next_ping: Instant,
    closed: bool,
}

/// A session's subscriptions other than to messages, each kind with the reads it waits for.
#[derive(Default)]
struct Others {
    users: HashMap<UserId, UserSubscription>,
    user_fetches: HashMap<FetchId, UserId>,
    states: HashMap<Topic, StateSubscription>,
    state_fetches: HashMap<FetchId, Topic>,
    typing: HashMap<ConversationId, TypingSubscription>,
    typing_fetches: HashMap<FetchId, ConversationId>,
}

impl Others {
    fn held(&self) -> usize {
        self.users.len() + self.states.len() + self.typing.len()
    }

    /// A read failed: ends the subscription that waited for it. Whether `fetch` was one of these kinds' reads.
    fn fetch_failed(&mut self, fetch: FetchId, outputs: &mut VecDeque<Output>) -> bool {
        if let Some(topic) = self.state_fetches.remove(&fetch) {
            if self.states.get(&topic).is_some_and(|subscription| subscription.waits_for(fetch)) {
                let subscription = remove(&mut self.states, &mut self.state_fetches, &topic).expect("just found");
                subscription.handle_fetch_failed(outputs);
            }
            return true;
        }
        if let Some(conversation_id) = self.typing_fetches.remove(&fetch) {
            if self.typing.get(&conversation_id).is_some_and(|subscription| subscription.waits_for(fetch)) {
                let subscription = self.typing.remove(&conversation_id).expect("just found");
                subscription.handle_fetch_failed(outputs);
            }
            return true;
        }
        if let Some(user_id) = self.user_fetches.remove(&fetch) {
            if self.users.get(&user_id).is_some_and(|subscription| subscription.waits_for(fetch)) {
                let subscription = self.users.remove(&user_id).expect("just found");
                subscription.handle_fetch_failed(outputs);
            }
            return true;
        }
        false
    }
}

impl Session {
    pub fn new(user_id: UserId, token_expires_at: Option<Instant>, now: Instant) -> Self {
        Self::with_max_subscriptions(user_id, token_expires_at, now, DEFAULT_SUBSCRIPTIONS_PER_CONNECTION)
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
            others: None,
            typing_timeout: DEFAULT_TYPING_TIMEOUT,
            request_linger: DEFAULT_REQUEST_LINGER,
            requested_until: None,
            next_fetch: 0,
            outputs: VecDeque::new(),
            token_expires_at,
            last_activity: now,
            next_ping: now + PING_INTERVAL,
            closed: false,
        }
    }

    /// How long a `markAsTyping` lasts for this session's typing subscriptions.
    pub fn with_typing_timeout(mut self, timeout: Duration) -> Self {
        self.typing_timeout = timeout;
        self
    }

    /// How long a request makes this session count as connected without a subscription.
    pub fn with_request_linger(mut self, linger: Duration) -> Self {
        self.request_linger = linger;
        self
    }

    /// The client made a request (any well-formed frame, a write included).
    pub fn handle_requested(&mut self, now: Instant) {
        self.requested_until = Some(now + self.request_linger);
    }

    /// Runs `handle` on one subscription with the context it needs.
    fn with_subscription<T>(
        &mut self,
        conversation_id: &ConversationId,
        handle: impl FnOnce(&mut Subscription, &mut Context<'_>) -> T,
    ) -> Option<T> {
        let subscription = self.subscriptions.get_mut(conversation_id)?;
        let mut new_fetch = fetch_allocator(&mut self.fetches, &mut self.next_fetch);
        let mut context = Context { user_id: &self.user_id, outputs: &mut self.outputs, new_fetch: &mut new_fetch };
        Some(handle(subscription, &mut context))
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
            Request::LoadMore { id, conversation_id, count } => {
                let Some(count) = page_size(count) else {
                    let error = RealtimeError::InvalidCount { field: "count", max: MAX_PAGE_MESSAGES };
                    self.outputs.push_back(Output::Error { id, error });
                    return;
                };
                let handled = self.with_subscription(&conversation_id, |subscription, context| {
                    subscription.load_more(context, id.clone(), count)
                });
                if handled.is_none() {
                    self.outputs.push_back(Output::Error { id, error: RealtimeError::NotSubscribed });
                }
            }
            Request::Unsubscribe { id, conversation_id } => {
                if let Some(subscription) = remove(&mut self.subscriptions, &mut self.fetches, &conversation_id) {
                    subscription.unsubscribe(&mut self.outputs);
                }
                self.outputs.push_back(Output::Ok { id });
            }
            Request::SubscribeUser { id, user_id } => self.subscribe_user(id, user_id),
            Request::UnsubscribeUser { id, user_id } => {
                let others = self.others.as_deref_mut();
                if let Some(subscription) = others.and_then(|o| remove(&mut o.users, &mut o.user_fetches, &user_id)) {
                    subscription.unsubscribe(&mut self.outputs);
                }
                self.outputs.push_back(Output::Ok { id });
            }
            Request::SubscribeState { id, topic, limit, filter } => self.subscribe_state(id, topic, limit, filter),
            Request::LoadMoreState { id, topic, count } => {
                let Some(count) = self.window_size(&id, &topic, "count", count) else { return };
                let found = self.others.as_deref_mut().and_then(|others| {
                    others.states.get_mut(&topic).map(|subscription| (subscription, &mut others.state_fetches))
                });
                let Some((subscription, state_fetches)) = found else {
                    self.outputs.push_back(Output::Error { id, error: RealtimeError::NotSubscribed });
                    return;
                };
                let new_fetch = || allocate(&mut self.next_fetch, state_fetches, &topic);
                subscription.load_more(&mut self.outputs, id, count, new_fetch);
            }
            Request::UnsubscribeState { id, topic } => {
                let others = self.others.as_deref_mut();
                if let Some(subscription) = others.and_then(|o| remove(&mut o.states, &mut o.state_fetches, &topic)) {
                    subscription.unsubscribe(&mut self.outputs);
                }
                self.outputs.push_back(Output::Ok { id });
            }
            Request::SubscribeTyping { id, conversation_id } => {
                let already = self.others.as_ref().is_some_and(|others| others.typing.contains_key(&conversation_id));
                if let Err(error) = self.may_subscribe(already) {
                    self.outputs.push_back(Output::Error { id, error });
                    return;
                }
                let others = self.others.get_or_insert_with(Box::default);
                let fetch = allocate(&mut self.next_fetch, &mut others.typing_fetches, &conversation_id);
                let (me, timeout) = (self.user_id.clone(), self.typing_timeout);
                let subscription =
                    TypingSubscription::start(&mut self.outputs, id, conversation_id.clone(), me, timeout, fetch);
                others.typing.insert(conversation_id, subscription);
            }
            Request::UnsubscribeTyping { id, conversation_id } => {
                let others = self.others.as_deref_mut();
                let removed = others.and_then(|o| remove(&mut o.typing, &mut o.typing_fetches, &conversation_id));
                if let Some(subscription) = removed {
                    subscription.unsubscribe(&mut self.outputs);
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
            let error = RealtimeError::InvalidCount { field: "limit", max: MAX_PAGE_MESSAGES };
            self.outputs.push_back(Output::Error { id, error });
            return;
        };
        if let Err(error) = self.may_subscribe(self.subscriptions.contains_key(&conversation_id)) {
            self.outputs.push_back(Output::Error { id, error });
            return;
        }
        let mut new_fetch = fetch_allocator(&mut self.fetches, &mut self.next_fetch);
        let mut context = Context { user_id: &self.user_id, outputs: &mut self.outputs, new_fetch: &mut new_fetch };
        let subscription = Subscription::start(&mut context, id, conversation_id.clone(), limit, resume);
        self.subscriptions.insert(conversation_id, Box::new(subscription));
    }

    /// Whether one more subscription may start: none of the same thing yet, and room under the limit, which
    /// counts subscriptions of every kind.
    fn may_subscribe(&self, already: bool) -> Result<(), RealtimeError> {
        if already {
            return Err(RealtimeError::AlreadySubscribed);
        }
        if self.held() >= self.max_subscriptions {
            return Err(RealtimeError::TooManySubscriptions { max: self.max_subscriptions });
        }
        Ok(())
    }

    /// Subscriptions of every kind.
    fn held(&self) -> usize {
        self.subscriptions.len() + self.others.as_ref().map_or(0, |others| others.held())
    }

    /// Whether this session makes its user count as connected: a user is while one of their sessions holds a
    /// subscription or made a request in the last few seconds (the Data API's rule).
    pub fn counts_as_connected(&self) -> bool {
        !self.closed && (self.held() > 0 || self.requested_until.is_some())
    }

    /// A windowed topic's `limit` or `count`, its default when not given; refuses one out of range (or given for
    /// a topic without a window).
    fn window_size(
        &mut self,
        id: &RequestId,
        topic: &Topic,
        field: &'static str,
        requested: Option<u32>,
    ) -> Option<usize> {
        let error = match (topic.page_sizes(), requested) {
            (None, None) => return Some(1),
            (None, Some(_)) => RealtimeError::InvalidRequest(format!("this subscription takes no {field}")),
            (Some((default, _)), None) => return Some(default),
            (Some((_, max)), Some(n)) if (1..=max as u32).contains(&n) => return Some(n as usize),
            (Some((_, max)), Some(_)) => RealtimeError::InvalidCount { field, max },
        };
        self.outputs.push_back(Output::Error { id: id.clone(), error });
        None
    }

    fn subscribe_state(
        &mut self,
        id: RequestId,
        topic: Topic,
        limit: Option<u32>,
        filter: Option<Arc<ConversationFilter>>,
    ) {
        let Some(limit) = self.window_size(&id, &topic, "limit", limit) else { return };
        let already = self.others.as_ref().is_some_and(|others| others.states.contains_key(&topic));
        if let Err(error) = self.may_subscribe(already) {
            self.outputs.push_back(Output::Error { id, error });
            return;
        }
        let others = self.others.get_or_insert_with(Box::default);
        let fetch = allocate(&mut self.next_fetch, &mut others.state_fetches, &topic);
        let subscription = StateSubscription::start(&mut self.outputs, id, topic.clone(), (limit, filter), fetch);
        others.states.insert(topic, subscription);
    }

    fn subscribe_user(&mut self, id: RequestId, user_id: UserId) {
        let already = self.others.as_ref().is_some_and(|others| others.users.contains_key(&user_id));
        if let Err(error) = self.may_subscribe(already) {
            self.outputs.push_back(Output::Error { id, error });
            return;
        }
        let others = self.others.get_or_insert_with(Box::default);
        let fetch = allocate(&mut self.next_fetch, &mut others.user_fetches, &user_id);
        let subscription = UserSubscription::start(&mut self.outputs, id, user_id.clone(), fetch);
        others.users.insert(user_id, subscription);
    }

    /// Whether a subscription still waits for `fetch`; a read nobody waits for may be dropped.
    pub fn wants(&self, fetch: FetchId) -> bool {
        self.fetches.contains_key(&fetch)
            || self.others.as_ref().is_some_and(|others| {
                others.user_fetches.contains_key(&fetch)
                    || others.state_fetches.contains_key(&fetch)
                    || others.typing_fetches.contains_key(&fetch)
            })
    }

    /// A state read for `fetch` came back.
    pub fn handle_state(&mut self, fetch: FetchId, state: State) {
        let Some(others) = self.others.as_deref_mut() else { return };
        let Some(topic) = others.state_fetches.remove(&fetch) else { return };
        let Some(subscription) = others.states.get_mut(&topic).filter(|subscription| subscription.waits_for(fetch))
        else {
            return;
        };
        let new_fetch = || allocate(&mut self.next_fetch, &mut others.state_fetches, &topic);
        subscription.handle_state(&mut self.outputs, state, new_fetch);
    }

    /// A read of a list's changed conversations came back.
    pub fn handle_conversations(&mut self, fetch: FetchId, states: Vec<(ConversationId, Option<ConversationState>)>) {
        let Some(others) = self.others.as_deref_mut() else { return };
        let Some(topic) = others.state_fetches.remove(&fetch) else { return };
        let Some(subscription) = others.states.get_mut(&topic).filter(|subscription| subscription.waits_for(fetch))
        else {
            return;
        };
        let new_fetch = || allocate(&mut self.next_fetch, &mut others.state_fetches, &topic);
        subscription.handle_conversations(&mut self.outputs, states, new_fetch);
    }

    /// A membership read for a typing subscription came back.
    pub fn handle_membership(&mut self, fetch: FetchId, participant: bool) {
        let Some(others) = self.others.as_deref_mut() else { return };
        let Some(conversation_id) = others.typing_fetches.remove(&fetch) else { return };
        let Some(subscription) =
            others.typing.get_mut(&conversation_id).filter(|subscription| subscription.waits_for(fetch))
        else {
            return;
        };
        let new_fetch = || allocate(&mut self.next_fetch, &mut others.typing_fetches, &conversation_id);
        subscription.handle_membership(&mut self.outputs, participant, new_fetch);
    }

    /// A user read for `fetch` came back: the user's stream's `seq`, and the user if they exist.
    pub fn handle_user(&mut self, fetch: FetchId, seq: Seq, user: Option<User>) {
        let Some(others) = self.others.as_deref_mut() else { return };
        let Some(user_id) = others.user_fetches.remove(&fetch) else { return };
        if let Some(subscription) = others.users.get_mut(&user_id).filter(|subscription| subscription.waits_for(fetch))
        {
            subscription.handle_user(&mut self.outputs, seq, user);
        }
    }

    /// The subscription that `fetch` was made for, if it still waits for it.
    fn fetched_for(&mut self, fetch: FetchId) -> Option<ConversationId> {
        let conversation_id = self.fetches.remove(&fetch)?;
        self.subscriptions.get(&conversation_id).filter(|subscription| subscription.waits_for(fetch))?;
        Some(conversation_id)
    }

    /// A window or page read for `fetch` came back. With a resume, `replay` holds the logged events the fetch
    /// asked for, if they were all there.
    pub fn handle_window(&mut self, fetch: FetchId, window: MessageWindow, replay: Option<Vec<SharedEvent>>) {
        let Some(conversation_id) = self.fetched_for(fetch) else { return };
        self.with_subscription(&conversation_id, |subscription, context| {
            subscription.handle_window(context, window, replay)
        });
    }

    /// A run of logged events for `fetch` came back: the whole range asked for, or `None`.
    pub fn handle_events(&mut self, fetch: FetchId, events: Option<Vec<SharedEvent>>) {
        let Some(conversation_id) = self.fetched_for(fetch) else { return };
        self.with_subscription(&conversation_id, |subscription, context| subscription.handle_events(context, events));
    }

    /// A read failed (the store was unavailable).
    pub fn handle_fetch_failed(&mut self, fetch: FetchId) {
        if self.others.as_deref_mut().is_some_and(|others| others.fetch_failed(fetch, &mut self.outputs)) {
            return;
        }
        let Some(conversation_id) = self.fetched_for(fetch) else { return };
        let ended = self.with_subscription(&conversation_id, |subscription, context| {
            subscription.handle_fetch_failed(context, fetch)
        });
        if ended == Some(true) {
            remove(&mut self.subscriptions, &mut self.fetches, &conversation_id);
        }
    }

    /// An event from the hub: from a watched key, or a membership change of this user. `now` times typing.
    pub fn handle_event(&mut self, event: &SharedEvent, now: Instant) {
        if self.closed {
            return;
        }
        match &event.stream {
            Stream::Conversation(conversation_id) => {
                let held = self.with_subscription(conversation_id, |subscription, context| {
                    subscription.handle_event(context, event)
                });
                if held == Some(Err(TooManyHeld)) {
                    self.close(CloseReason::SlowConsumer);
                    return;
                }
                self.typing_event(conversation_id, event, now);
            }
            Stream::User(user_id) => {
                if let Some(subscription) = self.others.as_deref_mut().and_then(|others| others.users.get_mut(user_id))
                {
                    subscription.handle_event(&mut self.outputs, event);
                }
            }
            Stream::Typing { conversation_id, .. } => self.typing_event(conversation_id, event, now),
            Stream::Read(_) | Stream::Online(_) => {}
        }
        let Some(others) = self.others.as_deref_mut() else { return };
        for (topic, subscription) in &mut others.states {
            if let Some(change) = subscription.change_of(event) {
                let new_fetch = || allocate(&mut self.next_fetch, &mut others.state_fetches, topic);
                subscription.handle_change(&mut self.outputs, change, new_fetch);
            }
        }
    }

    fn typing_event(&mut self, conversation_id: &ConversationId, event: &SharedEvent, now: Instant) {
        let Some(others) = self.others.as_deref_mut() else { return };
        if let Some(subscription) = others.typing.get_mut(conversation_id) {
            let new_fetch = || allocate(&mut self.next_fetch, &mut others.typing_fetches, conversation_id);
            subscription.handle_event(&mut self.outputs, event, now, new_fetch);
        }
    }

    /// The hub found this session's outbox full.
    pub fn handle_slow(&mut self) {
        self.close(CloseReason::SlowConsumer);
    }

    pub fn handle_shutdown(&mut self) {
        self.close(CloseReason::ShuttingDown);
    }

    /// The client broke the WebSocket protocol.
    pub fn handle_protocol_error(&mut self, violation: Violation) {
        self.close(CloseReason::Violation(violation));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.token_expires_at.is_some_and(|expires_at| now >= expires_at) {
            let conversations: Vec<_> = self.subscriptions.keys().cloned().collect();
            for conversation_id in conversations {
                self.outputs
                    .push_back(Output::SubscriptionError { conversation_id, error: RealtimeError::TokenExpired });
            }
            if let Some(others) = &self.others {
                for topic in others.states.keys().cloned() {
                    self.outputs.push_back(Output::StateError { topic, error: RealtimeError::TokenExpired });
                }
                for conversation_id in others.typing.keys().cloned() {
                    self.outputs.push_back(Output::TypingError { conversation_id, error: RealtimeError::TokenExpired });
                }
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
        for subscription in self.others.iter_mut().flat_map(|others| others.typing.values_mut()) {
            subscription.handle_timeout(&mut self.outputs, now);
        }
        if self.requested_until.is_some_and(|until| now >= until) {
            self.requested_until = None;
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
        let typing = self.others.iter().flat_map(|others| others.typing.values());
        for until in typing.filter_map(TypingSubscription::poll_timeout) {
            next = next.min(until);
        }
        if let Some(until) = self.requested_until {
            next = next.min(until);
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

/// Hands out fetch ids, remembering which conversation each was made for.
fn fetch_allocator<'a>(
    fetches: &'a mut HashMap<FetchId, ConversationId>,
    next_fetch: &'a mut u64,
) -> impl FnMut(&ConversationId) -> FetchId + 'a {
    move |conversation_id| allocate(next_fetch, fetches, conversation_id)
}

/// Removes the subscription to `key` and forgets the reads it waited for.
fn remove<K: Eq + std::hash::Hash, S>(
    subscriptions: &mut HashMap<K, S>,
    fetches: &mut HashMap<FetchId, K>,
    key: &K,
) -> Option<S> {
    let subscription = subscriptions.remove(key)?;
    fetches.retain(|_, fetching| fetching != key);
    Some(subscription)
}

/// Hands out one fetch id, remembering what it was made for.
fn allocate<K: Clone>(next_fetch: &mut u64, fetches: &mut HashMap<FetchId, K>, key: &K) -> FetchId {
    let fetch = FetchId(*next_fetch);
    *next_fetch += 1;
    fetches.insert(fetch, key.clone());
    fetch
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
