//! What the sans-IO state machines (`subscription`, `session`) ask the shell to do: the outputs it drains with
//! `Session::poll_output`, the ids of the reads it carries out, and the close codes.

use super::{
    error::RealtimeError,
    frames::RequestId,
    state::{State, Topic, Typing},
};
use crate::{
    domain::{
        ids::{ConversationId, Seq, UserId},
        user::User,
    },
    hub::SharedEvent,
    store::MessageWindow,
};

/// What a subscription watches on the hub, within the session's app.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    Conversation(ConversationId),
    Profile(UserId),
    Typing(ConversationId),
    Online(UserId),
}

/// Names one read the shell carries out, so its answer finds the subscription that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchId(pub(crate) u64);

#[derive(Debug)]
pub enum Output {
    /// Send this event frame as it is.
    Forward(SharedEvent),
    /// Send a whole window (subscribe, join, leave, repair); not a participant means a null snapshot. `resumed`
    /// is `Some(false)` when the client asked to resume and could not, or a hole could not be filled.
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
        error: RealtimeError,
    },
    /// The subscription ended in the error state.
    SubscriptionError {
        conversation_id: ConversationId,
        error: RealtimeError,
    },
    /// Read a page of the window; answer with `handle_window` or `handle_fetch_failed`. With `replay_after`, also
    /// read the logged events after that seq up to the window's, and pass them if they are all there.
    Fetch {
        fetch: FetchId,
        conversation_id: ConversationId,
        before: Option<Seq>,
        limit: usize,
        replay_after: Option<Seq>,
    },
    /// Read the logged events with `after < seq <= up_to`; answer with `handle_events` (`None` when the run is
    /// not whole) or `handle_fetch_failed`.
    FetchEvents {
        fetch: FetchId,
        conversation_id: ConversationId,
        after: Seq,
        up_to: Seq,
    },
    /// Start or stop receiving a key's events from the hub. Several subscriptions may watch one key: the shell
    /// counts them.
    Watch(Watched),
    Unwatch(Watched),
    /// Read a user and their stream's `seq` (the `seq` first); answer with `handle_user` or `handle_fetch_failed`.
    FetchUser {
        fetch: FetchId,
        user_id: UserId,
    },
    /// Send a user subscription's whole state.
    UserState {
        user_id: UserId,
        seq: Seq,
        user: Option<Box<User>>,
    },
    /// Read a state subscription's state (`limit` items for a windowed one); answer with `handle_state` or
    /// `handle_fetch_failed`.
    FetchState {
        fetch: FetchId,
        topic: Topic,
        limit: usize,
        filter: Option<std::sync::Arc<crate::domain::filter::ConversationFilter>>,
    },
    /// Read these conversations of a list alone; answer with `handle_conversations` or `handle_fetch_failed`.
    FetchConversations {
        fetch: FetchId,
        conversation_ids: Vec<ConversationId>,
    },
    /// Send a state subscription's whole state.
    State {
        topic: Topic,
        state: std::sync::Arc<State>,
    },
    /// A state subscription ended in the error state.
    StateError {
        topic: Topic,
        error: RealtimeError,
    },
    /// Read whether the session's user takes part in the conversation; answer with `handle_membership` or
    /// `handle_fetch_failed`.
    FetchMembership {
        fetch: FetchId,
        conversation_id: ConversationId,
    },
    /// Send a typing snapshot (`None`: null).
    Typing {
        conversation_id: ConversationId,
        typing: Option<Typing>,
    },
    /// A typing subscription ended in the error state.
    TypingError {
        conversation_id: ConversationId,
        error: RealtimeError,
    },
    Ping,
    Close(CloseReason),
}

/// Why the server closes a connection, with the close codes of `proto/PROTOCOL.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The outbox overflowed: the client did not read fast enough. Reconnect and resubscribe.
    SlowConsumer,
    TokenExpired,
    IdleTimeout,
    ShuttingDown,
    /// The client broke the WebSocket protocol (RFC 6455).
    Violation(Violation),
}

/// How a client broke the WebSocket protocol, each with its RFC 6455 close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// 1002: a malformed or forbidden frame (say, one the client did not mask).
    Protocol,
    /// 1007: a text frame that is not UTF-8.
    InvalidUtf8,
    /// 1009: a frame or message larger than the gateway accepts.
    TooBig,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::ShuttingDown => 1001,
            CloseReason::Violation(Violation::Protocol) => 1002,
            CloseReason::Violation(Violation::InvalidUtf8) => 1007,
            CloseReason::Violation(Violation::TooBig) => 1009,
            CloseReason::SlowConsumer => 4000,
            CloseReason::TokenExpired => 4001,
            CloseReason::IdleTimeout => 4002,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            CloseReason::ShuttingDown => "server shutting down",
            CloseReason::Violation(Violation::Protocol) => "protocol error",
            CloseReason::Violation(Violation::InvalidUtf8) => "text frame is not UTF-8",
            CloseReason::Violation(Violation::TooBig) => "frame too large",
            CloseReason::SlowConsumer => "slow consumer: reconnect and resubscribe",
            CloseReason::TokenExpired => "token expired",
            CloseReason::IdleTimeout => "idle timeout",
        }
    }
}
