//! `ApiError`: every way an HTTP request (REST, or the realtime upgrade) fails, mapped to a status and a
//! `{"errorCode", "reasons"}` body in exactly one place. Socket error frames reuse its codes for refused writes.
//! Internal causes are not sent to clients; they ride in the response extensions to the logging middleware.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{domain::Rejection, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("app {0:?} does not exist")]
    AppNotFound(String),
    /// A malformed request: bad JSON, bad query parameter, wrong content type. `code` names the kind.
    #[error("{reason}")]
    BadRequest { code: &'static str, reason: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request URI is longer than {max} bytes")]
    UriTooLong { max: usize },
    #[error("the request headers are larger than {max} bytes")]
    HeadersTooLarge { max: usize },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("the store is unavailable")]
    Unavailable(String),
    #[error("too many requests for this app; retry after the time in Retry-After")]
    RateLimited(std::time::Duration),
    #[error("this app has as many WebSocket connections open as it may")]
    TooManyConnections,
}

impl ApiError {
    pub fn bad_request(code: &'static str, reason: impl Into<String>) -> Self {
        ApiError::BadRequest { code, reason: reason.into() }
    }

    /// The error code, as REST bodies and socket error frames carry it.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::AppNotFound(_) => (StatusCode::NOT_FOUND, "APP_NOT_FOUND"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ApiError::RouteNotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "URI_TOO_LONG"),
            ApiError::HeadersTooLarge { .. } => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "HEADERS_TOO_LARGE"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::TooManyConnections => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_CONNECTIONS"),
            ApiError::Rejected(rejection) => match rejection {
                Rejection::Invalid(_) | Rejection::InvalidBatch(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
                Rejection::TooManyReactions { .. } => (StatusCode::BAD_REQUEST, "TOO_MANY_REACTIONS"),
                Rejection::UserNotFound(_) => (StatusCode::NOT_FOUND, "USER_NOT_FOUND"),
                Rejection::ConversationNotFound(_) => (StatusCode::NOT_FOUND, "CONVERSATION_NOT_FOUND"),
                Rejection::MessageNotFound(_) => (StatusCode::NOT_FOUND, "MESSAGE_NOT_FOUND"),
                Rejection::ParticipantNotFound { .. } => (StatusCode::NOT_FOUND, "PARTICIPANT_NOT_FOUND"),
                Rejection::NotAParticipant { .. } => (StatusCode::FORBIDDEN, "NOT_A_PARTICIPANT"),
                Rejection::ReadOnlyAccess { .. } => (StatusCode::FORBIDDEN, "READ_ONLY_ACCESS"),
                Rejection::NotMessageOwner { .. } => (StatusCode::FORBIDDEN, "UNAUTHORIZED_TO_EDIT"),
            },
        }
    }

    pub fn reasons(&self) -> Vec<String> {
        match self {
            ApiError::Rejected(Rejection::InvalidBatch(errors)) => errors.iter().map(ToString::to_string).collect(),
            // Never the internal cause.
            ApiError::Unavailable(_) => {
                vec!["the store is unavailable; the request was not applied, retry".into()]
            }
            other => vec![other.to_string()],
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(rejection) => ApiError::Rejected(rejection),
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
        }
    }
}

impl From<crate::domain::ValidationError> for ApiError {
    fn from(error: crate::domain::ValidationError) -> Self {
        ApiError::Rejected(Rejection::Invalid(error))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: &'static str,
    reasons: Vec<String>,
}

/// The internal cause of a 5xx, for the logging middleware.
#[derive(Clone, Debug)]
pub struct InternalCause(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.status_and_code();
        let mut response = (status, Json(ErrorBody { error_code, reasons: self.reasons() })).into_response();
        match self {
            ApiError::Unavailable(cause) => {
                response.extensions_mut().insert(InternalCause(cause));
            }
            ApiError::RateLimited(wait) => {
                let seconds = crate::limits::retry_after_seconds(wait);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
            }
            ApiError::TooManyConnections => {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, 1.into());
            }
            _ => {}
        }
        response
    }
}
