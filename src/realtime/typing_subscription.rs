//! Who is typing in a conversation (`subscribeTyping`), without I/O or a clock: the shell passes `Instant`s in.
//!
//! Typing is ephemeral: a `markAsTyping` is a signal on the conversation's typing key, never logged, and a
//! message sent by that user is a signal that they stopped. Each session keeps who types for itself, each typist
//! until `timeout` after their last signal (10 s, as TalkJS), so nodes need no shared clock and nothing is
//! replayed after a reconnect: a new subscription starts empty and fills as typists mark again.
//!
//! The snapshot is null while the session's user does not take part; otherwise at most `MAX_TYPISTS` users,
//! longest typing first and never the session's own user, or "many" beyond. A frame is sent only when the
//! snapshot changes, so while it is "many" further typists send nothing.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{
    error::RealtimeError,
    frames::RequestId,
    output::{FetchId, Output, Watched},
    state::Typing,
};
use crate::{
    domain::ids::{ConversationId, UserId},
    hub::{EncodedEvent, Stream},
};

/// How long a `markAsTyping` lasts (TalkJS: 10 s).
pub const DEFAULT_TYPING_TIMEOUT: Duration = Duration::from_secs(10);
/// Typists a snapshot lists at most; more are `{many: true}`.
pub const MAX_TYPISTS: usize = 5;

struct Typist {
    user_id: UserId,
    user: Utf8Bytes,
    until: Instant,
}

pub struct TypingSubscription {
    conversation_id: ConversationId,
    me: UserId,
    timeout: Duration,
    pending: Option<RequestId>,
    reading: Option<FetchId>,
    stale: bool,
    participant: bool,
    /// In the order they started typing.
    typists: Vec<Typist>,
    /// `None` until the first snapshot; then `Some(None)` is the null snapshot.
    sent: Option<Option<Typing>>,
}

impl TypingSubscription {
    /// Watches the conversation's typing signals, then reads whether the user takes part.
    pub fn start(
        outputs: &mut VecDeque<Output>,
        id: RequestId,
        conversation_id: ConversationId,
        me: UserId,
        timeout: Duration,
        fetch: FetchId,
    ) -> Self {
        outputs.push_back(Output::Watch(Watched::Typing(conversation_id.clone())));
        let mut subscription = Self {
            conversation_id,
            me,
            timeout,
            pending: Some(id),
            reading: None,
            stale: false,
            participant: false,
            typists: Vec::new(),
            sent: None,
        };
        subscription.read(outputs, fetch);
        subscription
    }

    fn read(&mut self, outputs: &mut VecDeque<Output>, fetch: FetchId) {
        self.reading = Some(fetch);
        self.stale = false;
        outputs.push_back(Output::FetchMembership { fetch, conversation_id: self.conversation_id.clone() });
    }

    pub fn waits_for(&self, fetch: FetchId) -> bool {
        self.reading == Some(fetch)
    }

    /// The membership read came back.
    pub fn handle_membership(
        &mut self,
        outputs: &mut VecDeque<Output>,
        participant: bool,
        new_fetch: impl FnOnce() -> FetchId,
    ) {
        self.reading = None;
        self.participant = participant;
        if !participant {
            self.typists.clear();
        }
        self.send_if_changed(outputs);
        if let Some(id) = self.pending.take() {
            outputs.push_back(Output::Ok { id });
        }
        if self.stale {
            self.read(outputs, new_fetch());
        }
    }

    /// An event from the hub: a typing signal of this conversation, or a change of the session user's membership.
    pub fn handle_event(
        &mut self,
        outputs: &mut VecDeque<Output>,
        event: &EncodedEvent,
        now: Instant,
        new_fetch: impl FnOnce() -> FetchId,
    ) {
        match &event.stream {
            Stream::Typing { conversation_id, user_id, typing } if *conversation_id == self.conversation_id => {
                if *user_id == self.me || !self.participant {
                    return;
                }
                match (self.typists.iter_mut().find(|typist| typist.user_id == *user_id), typing) {
                    (Some(typist), true) => {
                        typist.until = now + self.timeout;
                        typist.user = event.frame.clone();
                    }
                    (None, true) => self.typists.push(Typist {
                        user_id: user_id.clone(),
                        user: event.frame.clone(),
                        until: now + self.timeout,
                    }),
                    (_, false) => self.typists.retain(|typist| typist.user_id != *user_id),
                }
                self.send_if_changed(outputs);
            }
            Stream::Conversation(conversation_id)
                if *conversation_id == self.conversation_id && event.membership.is_some() =>
            {
                if self.reading.is_some() {
                    self.stale = true;
                } else {
                    self.read(outputs, new_fetch());
                }
            }
            _ => {}
        }
    }

    /// Drops the typists whose time ran out.
    pub fn handle_timeout(&mut self, outputs: &mut VecDeque<Output>, now: Instant) {
        let before = self.typists.len();
        self.typists.retain(|typist| typist.until > now);
        if self.typists.len() != before {
            self.send_if_changed(outputs);
        }
    }

    /// When the next typist's time runs out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.typists.iter().map(|typist| typist.until).min()
    }

    fn snapshot(&self) -> Option<Typing> {
        if !self.participant {
            return None;
        }
        if self.typists.len() > MAX_TYPISTS {
            return Some(Typing::Many);
        }
        Some(Typing::Few(self.typists.iter().map(|typist| typist.user.clone()).collect()))
    }

    fn send_if_changed(&mut self, outputs: &mut VecDeque<Output>) {
        // Until the first read answers, nothing is known.
        if self.reading.is_some() && self.sent.is_none() {
            return;
        }
        let snapshot = self.snapshot();
        if self.sent.as_ref() != Some(&snapshot) {
            outputs
                .push_back(Output::Typing { conversation_id: self.conversation_id.clone(), typing: snapshot.clone() });
            self.sent = Some(snapshot);
        }
    }

    /// The membership read failed.
    pub fn handle_fetch_failed(self, outputs: &mut VecDeque<Output>) {
        outputs.push_back(Output::Unwatch(Watched::Typing(self.conversation_id.clone())));
        match self.pending {
            Some(id) => outputs.push_back(Output::Error { id, error: RealtimeError::StoreUnavailable }),
            None => outputs.push_back(Output::TypingError {
                conversation_id: self.conversation_id,
                error: RealtimeError::StoreUnavailable,
            }),
        }
    }

    pub fn unsubscribe(self, outputs: &mut VecDeque<Output>) {
        outputs.push_back(Output::Unwatch(Watched::Typing(self.conversation_id)));
        if let Some(id) = self.pending {
            outputs.push_back(Output::Error { id, error: RealtimeError::Unsubscribed });
        }
    }
}
