//! `POST /v1/{appId}/batch` (reference §1.10): up to 10 operations `[seq, method, path, payload?, options?]`, with
//! paths relative to `/v1/{appId}`, answered `[[seq, status, body], ...]` in the order given. Each operation runs
//! through the same routes as its own request would (authentication with the batch's credential, the app's rate
//! limit, validation, the handler), one after the other; a bad operation gets its own error status and the others
//! still run. For `GET`, `payload` holds the query parameters.

use axum::{
    body::{to_bytes, Body, Bytes},
    extract::{Path, Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::MAX_JSON_BODY_BYTES;
use crate::{app::AppState, http::error::ApiError};

/// Operations per batch, as TalkJS allows.
pub const MAX_OPERATIONS: usize = 10;

pub async fn post_batch(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let operations: Vec<Value> = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request("INVALID_REQUEST", format!("the body must be an array of operations: {error}"))
    })?;
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            format!("a batch holds 1 to {MAX_OPERATIONS} operations, not {}", operations.len()),
        ));
    }
    let routes = state.dispatch.get().cloned().ok_or_else(|| ApiError::Unavailable("routes not ready".into()))?;
    let routes: axum::Router = routes.with_state(state.clone());
    let mut answers = Vec::with_capacity(operations.len());
    for (index, operation) in operations.iter().enumerate() {
        let Some(seq) = operation.get(0).filter(|seq| seq.is_number()).cloned() else {
            return Err(ApiError::bad_request(
                "INVALID_REQUEST",
                format!("[{index}] must be [seq, method, path, payload?, options?] with a number seq"),
            ));
        };
        let (status, body) = match request_of(&app_id, &headers, operation) {
            Ok(request) => run(routes.clone(), request).await,
            Err(reason) => (StatusCode::BAD_REQUEST, json!({ "errorCode": "INVALID_REQUEST", "reasons": [reason] })),
        };
        answers.push(json!([seq, status.as_u16(), body]));
    }
    Ok(Json(answers).into_response())
}

/// The request an operation stands for, or why it stands for none.
fn request_of(app_id: &str, headers: &HeaderMap, operation: &Value) -> Result<Request, String> {
    let method = operation.get(1).and_then(Value::as_str).ok_or("the method must be a string")?;
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        other => return Err(format!("unsupported method {other:?}")),
    };
    let path = operation.get(2).and_then(Value::as_str).ok_or("the path must be a string")?;
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} must start with / (it is relative to /v1/{{appId}})"));
    }
    let route = path.split(['?', '#']).next().unwrap_or_default();
    if route == "/batch" || route.starts_with("/batch/") {
        return Err("a batch cannot hold a batch".into());
    }
    let payload = operation.get(3).filter(|payload| !payload.is_null());
    let mut uri =
        format!("/v1/{}{path}", percent_encoding::utf8_percent_encode(app_id, percent_encoding::NON_ALPHANUMERIC));
    let body = if method == Method::GET {
        if let Some(payload) = payload {
            let query = payload.as_object().ok_or("a GET's payload holds its query parameters, as an object")?;
            let mut pairs = url_pairs(query)?;
            if !pairs.is_empty() {
                uri.push(if uri.contains('?') { '&' } else { '?' });
                uri.push_str(&std::mem::take(&mut pairs));
            }
        }
        Body::empty()
    } else {
        Body::from(payload.map(Value::to_string).unwrap_or_default())
    };
    let mut request =
        Request::builder().method(method).uri(&uri).body(body).map_err(|error| format!("bad path: {error}"))?;
    if let Some(credential) = headers.get(header::AUTHORIZATION) {
        request.headers_mut().insert(header::AUTHORIZATION, credential.clone());
    }
    if payload.is_some() {
        request.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("a valid header"));
    }
    Ok(request)
}

fn url_pairs(query: &serde_json::Map<String, Value>) -> Result<String, String> {
    let encode =
        |text: &str| percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut pairs = Vec::with_capacity(query.len());
    for (key, value) in query {
        let value = value.as_str().ok_or_else(|| format!("the query parameter {key:?} must be a string"))?;
        pairs.push(format!("{}={}", encode(key), encode(value)));
    }
    Ok(pairs.join("&"))
}

/// Runs one operation through the routes; its status and JSON body (`null` when it has none).
async fn run(routes: axum::Router, request: Request) -> (StatusCode, Value) {
    let response = match routes.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = to_bytes(response.into_body(), MAX_JSON_BODY_BYTES * 4).await.unwrap_or_default();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, body)
}
