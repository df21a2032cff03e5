//! The top: the REST routes and the realtime route put together, with the layers every request passes through
//! (tracing, the request timeout, latency metrics, logging of internal causes, the JSON 404).

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{StatusCode, Uri},
    middleware::{self, Next},
    response::Response,
    Router,
};
use tower::{util::BoxCloneSyncService, ServiceBuilder};
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

use crate::{
    api,
    app::AppState,
    http::error::{ApiError, InternalCause},
    realtime, serve,
};

/// A request that takes longer than this is answered 408; the store's own work still completes or rolls back.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Every (method, path) the gateway serves: what the OpenAPI test compares with `proto/openapi.yaml`.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    let mut list = api::route_list();
    list.push(("GET", realtime::ROUTE));
    list
}

/// The router inside the layers that need no route: what `serve` answers every request with.
pub fn router(state: AppState) -> serve::Service {
    let demo = if state.config.demo { crate::demo::routes() } else { Router::new() };
    let rest = api::routes(&state).router;
    // Set once per state: a second router over the same state finds it set.
    let _ = state.dispatch.set(rest.clone());
    let routed = Router::new()
        .merge(rest)
        .merge(demo)
        // Authenticated by a user token, not the app secret.
        .route(realtime::ROUTE, axum::routing::get(realtime::upgrade))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the router, the one layer that needs the matched route.
        .layer(middleware::from_fn_with_state(state.clone(), observe_requests))
        .with_state(state);
    // Around the router once, not around each of its routes: `Router::layer` boxes a layer per route, and a request
    // clones the boxes of its route's whole stack, again at each middleware (about 50 allocations a request).
    let service = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(Body::new))
        // Spans name the method and the path only: query strings carry user tokens (`?token=`).
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(middleware::from_fn(log_internal_errors))
        .layer(middleware::from_fn(refuse_oversized_heads))
        .service(routed);
    BoxCloneSyncService::new(service)
}

/// Records each request's latency under its route template, never its concrete path.
async fn observe_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let (status, took) = (response.status().as_u16(), started.elapsed());
    // The path, never the query: a query may hold a user token (`?token=`).
    tracing::debug!(%method, %path, status, millis = took.as_secs_f64() * 1000.0, "request");
    let labels = crate::metrics::RouteLabels { method, route, status };
    state.metrics.rest_requests.get_or_create(&labels).observe(took.as_secs_f64());
    response
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
}

/// The longest request URI answered; longer ones get `414 URI_TOO_LONG`. The HTTP parser itself refuses URIs over
/// 64 KiB, with an empty body, before any of this runs.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most header bytes (names and values) answered; more get `431 HEADERS_TOO_LARGE`. The HTTP parser refuses
/// request heads over `serve::MAX_HEAD_BYTES` with an empty body.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses over-long URIs and over-large headers in the gateway's error format.
async fn refuse_oversized_heads(request: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let uri_bytes = request.uri().to_string().len();
    if uri_bytes > MAX_URI_BYTES {
        return ApiError::UriTooLong { max: MAX_URI_BYTES }.into_response();
    }
    let header_bytes: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.as_bytes().len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge { max: MAX_HEADER_BYTES }.into_response();
    }
    next.run(request).await
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
