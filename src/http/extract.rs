//! Extractors whose rejections speak our error format instead of axum's plain text.

use axum::{
    extract::{rejection::JsonRejection, rejection::QueryRejection, FromRequest, FromRequestParts},
    http::StatusCode,
};

use super::error::ApiError;

/// `Json` that answers a bad body with `400 INVALID_JSON` (or `413`) naming the problem.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge("the request body is too large".into());
        }
        let code = match rejection {
            JsonRejection::MissingJsonContentType(_) => "INVALID_CONTENT_TYPE",
            // JSON, but not of the shape the route takes: a field missing or of the wrong type.
            JsonRejection::JsonDataError(_) => "INVALID_BODY",
            _ => "INVALID_JSON",
        };
        ApiError::bad_request(code, rejection.body_text())
    }
}

/// `Query` that answers a bad query string with `400 INVALID_QUERY`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("INVALID_QUERY", rejection.body_text())
    }
}

/// `Path` that answers an undecodable path with `400 INVALID_PATH`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("INVALID_PATH", rejection.body_text())
    }
}

/// An optional JSON body: an empty body is `None`; anything else must be valid JSON of `T`.
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes::Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is too large".into())
            } else {
                ApiError::bad_request("INVALID_BODY", rejection.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes).map(|value| Self(Some(value))).map_err(|error| {
            let code = if error.is_data() { "INVALID_BODY" } else { "INVALID_JSON" };
            ApiError::bad_request(code, format!("invalid JSON body: {error}"))
        })
    }
}
