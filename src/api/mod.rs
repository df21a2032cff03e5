//! The REST API of seeds 000 and 001 under `/v1/{appId}`, plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Routes are registered through `Routes`, which also records each (method, path) pair: `route_list()` is what the
//! OpenAPI test compares with `proto/openapi.yaml`, so a route cannot exist without being specified. `gateway`
//! puts these routes together with the realtime one and the layers around both.

pub mod auth;
mod batch;
mod conversations;
pub mod files;
mod import;
mod listing;
mod messages;
mod participants;
mod reactions;
mod users;

use axum::{
    extract::{DefaultBodyLimit, State},
    handler::Handler,
    middleware,
    response::{IntoResponse, Response},
    routing, Json, Router,
};
use serde_json::json;

use crate::{app::AppState, http::error::ApiError};

/// A JSON body larger than this is refused with 413 (a full send batch of 10 maximal texts fits).
pub const MAX_JSON_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The `{}` body of a successful write.
pub struct Empty;

impl IntoResponse for Empty {
    fn into_response(self) -> Response {
        Json(json!({})).into_response()
    }
}

/// A router that remembers what it routes.
pub struct Routes {
    pub router: Router<AppState>,
    pub list: Vec<(&'static str, &'static str)>,
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

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self { router: Router::new(), list: Vec::new() }
    }

    method!(get, "GET");

    /// Adds `other`'s routes to these.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.list.extend(other.list);
        self
    }
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
        .post("/v1/{appId}/import/conversations/{conversationId}/messages", import::post_import_messages)
        .post("/v1/{appId}/batch", batch::post_batch)
}

/// Routes open to anyone.
fn public() -> Routes {
    Routes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics)
        .get("/v1/{appId}/files/{fileId}/{filename}", files::download_file)
}

/// Uploads have their own, larger, body limit.
fn uploads(max_upload_bytes: usize) -> Routes {
    let mut routes = Routes::new().post("/v1/{appId}/files", files::upload_file);
    routes.router = routes.router.layer(DefaultBodyLimit::max(max_upload_bytes + files::MULTIPART_OVERHEAD_BYTES));
    routes
}

/// Every (method, path) of the REST API.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    let mut list = authenticated().list;
    list.extend(uploads(0).list);
    list.extend(public().list);
    list
}

/// Every REST route with its layers: the app's credential on the authenticated ones, body limits.
pub fn routes(state: &AppState) -> Routes {
    let authenticated = authenticated();
    let uploads = uploads(state.config.max_upload_bytes);
    let mut list = authenticated.list;
    list.extend(uploads.list);
    let router = authenticated
        .router
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .merge(uploads.router)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_app));
    Routes { router, list }.merge(public())
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
    state.metrics.history_bytes.set(state.node.history().bytes() as i64);
    (headers, state.metrics.render()).into_response()
}
