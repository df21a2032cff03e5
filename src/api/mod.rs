//! The REST API of seeds 000 and 001 under `/v1/{appId}`, plus `/healthz`.
//!
//! Routes are registered through `Routes`, which also records each (method, path) pair: `route_list()` is what the
//! OpenAPI test compares with `proto/openapi.yaml`, so a route cannot exist without being specified.

pub mod auth;
mod conversations;
pub mod error;
pub mod extract;
mod files;
mod listing;
mod messages;
mod participants;
mod reactions;
mod users;

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    handler::Handler,
    http::{StatusCode, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing, Json, Router,
};
use serde_json::json;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

use crate::app::AppState;
use error::{ApiError, InternalCause};

/// A JSON body larger than this is refused with 413 (a full send batch of 10 maximal texts fits).
pub const MAX_JSON_BODY_BYTES: usize = 2 * 1024 * 1024;
/// A request that takes longer than this is answered 408; the store's own work still completes or rolls back.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `{}` body of a successful write.
pub struct Empty;

impl IntoResponse for Empty {
    fn into_response(self) -> Response {
        Json(json!({})).into_response()
    }
}

/// A router that remembers what it routes.
struct Routes {
    router: Router<AppState>,
    list: Vec<(&'static str, &'static str)>,
}

macro_rules! method {
    ($name:ident, $upper:literal) => {
        fn $name<H, T>(mut self, path: &'static str, handler: H) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.router = self.router.route(path, routing::$name(handler));
            self.list.push(($upper, path));
            self
        }
    };
}

impl Routes {
    fn new() -> Self {
        Self { router: Router::new(), list: Vec::new() }
    }

    method!(get, "GET");
    method!(put, "PUT");
    method!(post, "POST");
    method!(patch, "PATCH");
    method!(delete, "DELETE");
}

/// Routes that need the app's secret or an app JWT.
fn authenticated() -> Routes {
    const USERS: &str = "/v1/{appId}/users";
    const USER: &str = "/v1/{appId}/users/{userId}";
    const CONVERSATIONS: &str = "/v1/{appId}/conversations";
    const CONVERSATION: &str = "/v1/{appId}/conversations/{conversationId}";
    const PARTICIPANT: &str = "/v1/{appId}/conversations/{conversationId}/participants/{userId}";
    const MESSAGES: &str = "/v1/{appId}/conversations/{conversationId}/messages";
    const MESSAGE: &str = "/v1/{appId}/conversations/{conversationId}/messages/{messageId}";
    const REACTION: &str = "/v1/{appId}/conversations/{conversationId}/messages/{messageId}/reactions/{emoji}/{userId}";
    Routes::new()
        .get(USERS, users::list_users)
        .put(USERS, users::put_users)
        .get(USER, users::get_user)
        .put(USER, users::put_user)
        .get("/v1/{appId}/users/{userId}/conversations", users::list_user_conversations)
        .patch("/v1/{appId}/users/{userId}/conversations/{conversationId}", participants::patch_read_state)
        .put("/v1/{appId}/users/{userId}/conversations/{conversationId}", participants::patch_read_state)
        .get(CONVERSATIONS, conversations::list_conversations)
        .get(CONVERSATION, conversations::get_conversation)
        .put(CONVERSATION, conversations::put_conversation)
        .delete(CONVERSATION, conversations::delete_conversation)
        .put(PARTICIPANT, participants::put_participant)
        .patch(PARTICIPANT, participants::patch_participant)
        .delete(PARTICIPANT, participants::delete_participant)
        .post("/v1/{appId}/conversations/{conversationId}/readBy/{userId}", participants::post_read_by)
        .get(MESSAGES, messages::list_messages)
        .post(MESSAGES, messages::post_messages)
        .delete(MESSAGES, messages::delete_all_messages)
        .get(MESSAGE, messages::get_message)
        .put(MESSAGE, messages::put_message)
        .delete(MESSAGE, messages::delete_message)
        .put(REACTION, reactions::put_reaction)
        .delete(REACTION, reactions::delete_reaction)
}

/// Routes open to anyone.
fn public() -> Routes {
    Routes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics)
        .get("/v1/{appId}/files/{fileId}/{filename}", files::download_file)
        // Authenticated by a user token, not the app secret.
        .get("/v1/{appId}/realtime", crate::realtime::upgrade)
}

/// Uploads have their own, larger, body limit.
fn uploads(max_upload_bytes: usize) -> Routes {
    let mut routes = Routes::new().post("/v1/{appId}/files", files::upload_file);
    routes.router = routes.router.layer(DefaultBodyLimit::max(max_upload_bytes));
    routes
}

/// Every (method, path) the gateway serves.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    let mut list = authenticated().list;
    list.extend(uploads(0).list);
    list.extend(public().list);
    list
}

pub fn router(state: AppState) -> Router {
    let authenticated = authenticated()
        .router
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .merge(uploads(state.config.max_upload_bytes).router)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_app));
    Router::new()
        .merge(authenticated)
        .merge(public().router)
        .fallback(route_not_found)
                .layer(middleware::from_fn(log_internal_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe_requests))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        // Spans name the method and the path only: query strings carry user tokens (`?token=`).
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.check().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(error) => ApiError::Unavailable(error.to_string()).into_response(),
    }
}

/// Ready once the store is open (it is before the server listens) and until shutdown begins.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return ApiError::Unavailable("shutting down".into()).into_response();
    }
    healthz(State(state)).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    let headers = [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    (headers, state.metrics.render()).into_response()
}

/// Records each request's latency under its route template, never its concrete path.
async fn observe_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = crate::metrics::RouteLabels { method, route, status: response.status().as_u16() };
    state.metrics.rest_requests.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

/// Logs the internal cause of a failed request once, here, rather than where the error was made.
async fn log_internal_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(%method, %path, %cause, status = %response.status(), "request failed");
    }
    response
}
