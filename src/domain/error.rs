//! Why a request is refused, in domain terms. `api::error` maps each variant to a status and an error code.

use std::fmt;

use super::ids::{ConversationId, MessageId, UserId};

/// A field that failed validation, and why. Cheap and comparable, for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// Prefixes the field with its place in a batch, e.g. `[2].sender`.
    pub fn at(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() || self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ValidationError {}

/// Every reason a well-formed request can be refused. The store returns these from inside its transaction, so the
/// check and the write are atomic.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Invalid(ValidationError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidBatch(Vec<ValidationError>),
    #[error("user \"{0}\" does not exist")]
    UserNotFound(UserId),
    #[error("conversation \"{0}\" does not exist")]
    ConversationNotFound(ConversationId),
    #[error("message \"{0}\" does not exist in this conversation")]
    MessageNotFound(MessageId),
    #[error("user \"{user}\" is not a participant of conversation \"{conversation}\"")]
    ParticipantNotFound { conversation: ConversationId, user: UserId },
    #[error("{field}: user \"{user}\" is not a participant of this conversation")]
    NotAParticipant { field: String, user: UserId },
    #[error("{field}: user \"{user}\" has Read access and cannot send messages")]
    ReadOnlyAccess { field: String, user: UserId },
    #[error("user \"{user}\" may not change message \"{message}\"")]
    NotMessageOwner { user: UserId, message: MessageId },
    #[error("message already has the maximum of {max} distinct emoji reactions")]
    TooManyReactions { max: usize },
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection::Invalid(ValidationError::new(field, reason))
    }
}

impl From<ValidationError> for Rejection {
    fn from(error: ValidationError) -> Self {
        Rejection::Invalid(error)
    }
}
