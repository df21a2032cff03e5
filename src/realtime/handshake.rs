//! The WebSocket handshake (RFC 6455, section 4.2) on hyper's upgrade, and the task a session runs in.
//!
//! axum's `WebSocketUpgrade` ran the upgrade and then the session in one spawned task, and a task is as large as
//! its largest state for its whole life: what the upgrade needed stayed beside the session, about 1.7 KiB an
//! idle connection. Here each phase is boxed, so the task itself holds a pointer.

use std::future::Future;

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
    response::Response,
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
    WebSocketStream,
};

use crate::http::error::ApiError;

/// A client's socket after the handshake.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A valid upgrade request, not answered yet.
pub struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let refuse = |reason: &str| ApiError::bad_request("INVALID_UPGRADE", reason);
        if parts.method != Method::GET {
            return Err(refuse("a WebSocket upgrade is a GET request"));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refuse("the Connection header does not include 'upgrade'"));
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse("the Upgrade header does not include 'websocket'"));
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err(refuse("the Sec-WebSocket-Version header is not '13'"));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(refuse("the Sec-WebSocket-Key header is missing"));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a header value");
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(refuse("this connection cannot be upgraded"));
        };
        Ok(Self { accept, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper hands the connection over, runs the future `session` makes of the socket. That
    /// future sits in the task: it should be small (a box of the session's loop).
    pub fn accept<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self { accept, on_upgrade } = self;
        // Boxed before the task takes it: what a task's future captures stays in the task for its whole life.
        let upgrade = Box::pin(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(cause = %error, "upgrade failed");
                    return None;
                }
            };
            let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
            Some(session(socket))
        });
        tokio::spawn(async move {
            let upgraded: Option<Fut> = upgrade.await;
            if let Some(session) = upgraded {
                session.await;
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .expect("a 101 response builds")
    }
}
