//! `RealtimeError`: every way a client frame is refused, with the error code and reasons of its `error` frame
//! (`proto/PROTOCOL.md`, "Error codes"), in one place. Refusals of writes carry the REST codes of `ApiError`.

use crate::http::error::ApiError;

/// The largest `limit` and `loadMore` count.
pub const MAX_PAGE_MESSAGES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// Not JSON, no usable `id`, an unknown `type` or field, a binary frame.
    #[error("{0}")]
    InvalidFrame(String),
    /// A well-formed frame with a value out of range.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{field} must be from 1 to {max}")]
    InvalidCount { field: &'static str, max: usize },
    #[error("this session already subscribes to that conversation")]
    AlreadySubscribed,
    #[error("this session does not subscribe to that conversation")]
    NotSubscribed,
    #[error("the subscription has no snapshot yet; wait for it before loadMore")]
    NotActive,
    /// The subscription was ended (`unsubscribe`) before the read this request waited for came back.
    #[error("the subscription ended before this request could be answered")]
    Unsubscribed,
    #[error("a session holds at most {max} subscriptions")]
    TooManySubscriptions { max: usize },
    #[error("too many frames per second on this connection; slow down")]
    TooManyFrames,
    #[error("too many requests in flight on this connection; wait for replies")]
    TooManyInFlight,
    #[error("{0}")]
    Unauthorized(String),
    #[error("the token is for another user")]
    TokenForAnotherUser,
    #[error("the token expired and was not replaced")]
    TokenExpired,
    #[error("the store is unavailable; subscribe again")]
    StoreUnavailable,
    /// A write the store or the rules refused: the REST error, code and reasons.
    #[error(transparent)]
    Write(ApiError),
}

impl RealtimeError {
    pub fn code(&self) -> &'static str {
        match self {
            RealtimeError::InvalidFrame(_) => "INVALID_FRAME",
            RealtimeError::InvalidRequest(_) | RealtimeError::InvalidCount { .. } => "INVALID_REQUEST",
            RealtimeError::AlreadySubscribed => "ALREADY_SUBSCRIBED",
            RealtimeError::NotSubscribed => "NOT_SUBSCRIBED",
            RealtimeError::NotActive => "SUBSCRIPTION_NOT_ACTIVE",
            RealtimeError::Unsubscribed => "UNSUBSCRIBED",
            RealtimeError::TooManySubscriptions { .. } => "TOO_MANY_SUBSCRIPTIONS",
            RealtimeError::TooManyFrames | RealtimeError::TooManyInFlight => "TOO_MANY_REQUESTS",
            RealtimeError::Unauthorized(_) => "UNAUTHORIZED",
            RealtimeError::TokenForAnotherUser => "FORBIDDEN",
            RealtimeError::TokenExpired => "TOKEN_EXPIRED",
            RealtimeError::StoreUnavailable => "SERVICE_UNAVAILABLE",
            RealtimeError::Write(error) => error.code(),
        }
    }

    pub fn reasons(&self) -> Vec<String> {
        match self {
            RealtimeError::Write(error) => error.reasons(),
            other => vec![other.to_string()],
        }
    }
}

impl From<ApiError> for RealtimeError {
    fn from(error: ApiError) -> Self {
        RealtimeError::Write(error)
    }
}
