//! The states the live subscriptions other than message windows send, as data: what the state machines hand the
//! shell and the shell encodes (`frames`).

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::{
    domain::{
        ids::{ConversationId, UserId},
        user::User,
    },
    store::{ConversationListPage, ConversationState, ParticipantsPage},
};

/// What a state subscription is of. A session has at most one of each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Conversation(ConversationId),
    Participants(ConversationId),
    Online(UserId),
    /// The session user's conversation list (one per session).
    Conversations,
}

/// A user and whether they are connected on any node (`hub::presence`).
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineState {
    pub user: User,
    pub is_connected: bool,
}

/// A state as read; `None` is the null snapshot (not a participant, or no such user).
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Conversation(Option<Box<ConversationState>>),
    Participants(Option<ParticipantsPage>),
    Online(Option<Box<OnlineState>>),
    /// Never null: empty while the user does not exist.
    Conversations(ConversationListPage),
}

/// A typing snapshot as sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Typing {
    /// The typists' UserSnapshots (as the signals carried them), longest typing first.
    Few(Vec<Utf8Bytes>),
    Many,
}
