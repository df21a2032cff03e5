//! Plain data and rules of the chat domain: ids, users, conversations, messages, reactions, filters, events.
//!
//! Nothing here does I/O, reads the clock or knows JSON: callers pass `now` in, and `wire` gives the types their
//! JSON shape. Start with `ids.rs` and `message.rs`.

pub mod content;
pub mod conversation;
pub mod error;
pub mod event;
pub mod filter;
pub mod ids;
pub mod message;
pub mod reaction;
pub mod user;

pub use error::{Rejection, ValidationError};

/// Unix epoch milliseconds, the unit of every timestamp in the API.
pub type Millis = i64;

/// A custom data map: string keys to string values.
pub type Custom = std::collections::BTreeMap<String, String>;

/// A patch of a custom map: `Some(value)` sets a key, `None` deletes it.
pub type CustomPatch = std::collections::BTreeMap<String, Option<String>>;

/// Who asks for a write: the app's backend (REST, trusted) or one user (the socket, bound by participation rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    App,
    User(ids::UserId),
}

/// Three-way field update used by PATCH-like writes: leave it, clear it (JSON `null`), or set it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Unchanged,
    Clear,
    Set(T),
}

impl<T> Field<T> {
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Field::Unchanged)
    }

    /// Applies the update to a current value.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Field::Unchanged => current,
            Field::Clear => None,
            Field::Set(value) => Some(value),
        }
    }
}

/// Limits on the size of what clients may store. Shared by REST and (later) the socket.
pub mod limits {
    /// Longest user, conversation or message id, in characters.
    pub const MAX_ID_CHARS: usize = 255;
    /// Longest message text, in bytes. TalkJS does not publish one; 64 KiB keeps rows and frames small.
    pub const MAX_TEXT_BYTES: usize = 64 * 1024;
    /// Most keys in one custom map.
    pub const MAX_CUSTOM_KEYS: usize = 100;
    /// Longest custom key or value, in bytes.
    pub const MAX_CUSTOM_ENTRY_BYTES: usize = 4096;
    /// Most messages in one `POST .../messages` (seed 000).
    pub const MAX_MESSAGES_PER_SEND: usize = 10;
    /// Most users in one `PUT /users` batch.
    pub const MAX_USERS_PER_BATCH: usize = 100;
    /// Longest idempotency key, in characters.
    pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
    /// How long an idempotency key names its message (seed 000: 24 hours).
    pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
    /// `readBy` is filled only for conversations with at most this many participants (seed 000).
    pub const MAX_PARTICIPANTS_FOR_READ_BY: usize = 300;
    /// Default and largest page for REST lists (reference §5 #1).
    pub const DEFAULT_PAGE_LIMIT: usize = 10;
    pub const MAX_PAGE_LIMIT: usize = 100;
}
