//! The WebSocket gateway: `GET /v1/{appId}/realtime` upgrades an authenticated user to a session
//! (`proto/PROTOCOL.md`).
//!
//! `frames` knows the JSON and `error` the error codes; `subscription` and `session` hold the protocol logic
//! without I/O; `socket` is the thin shell that runs a session; `writes` carries out what users write over the
//! socket; `publisher` turns committed events into frames for the node, and reads runs of them back for replays;
//! `catchup` delivers what other nodes committed from the log, when the broker between nodes did not bring it.
//! Start with `session.rs`.

pub mod error;
mod frame_writer;
pub mod frames;
pub mod output;
pub mod state;
pub mod state_subscription;
pub mod subscription;
pub mod typing_subscription;
pub mod user_subscription;

pub mod session;

pub mod catchup;
pub mod handshake;
pub mod publisher;
pub mod socket;
pub mod writes;

use axum::{
    extract::State,
    http::{header::AUTHORIZATION, HeaderMap},
    response::Response,
};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{
    app::AppState,
    domain::ids::AppId,
    http::{
        error::ApiError,
        extract::{AppPath, AppQuery},
    },
    token::verify_user_token,
};

/// Where clients connect.
pub const ROUTE: &str = "/v1/{appId}/realtime";

/// The largest frame or message a client may send; larger ones close the connection with 1009.
pub const MAX_CLIENT_FRAME_BYTES: usize = 256 * 1024;
/// Per-connection socket buffers: small, since a gateway holds many idle connections. The read buffer is held
/// (and zeroed) for the connection's whole life, and a client's frames are small (a subscribe is about 100 bytes);
/// a larger frame grows it to the frame's size and is read in steps of this many bytes.
const READ_BUFFER_BYTES: usize = 512;
/// tungstenite writes only pongs and the close frame (the session's own frames go out through `frame_writer`, with
/// no copy into its buffer): each at once.
const WRITE_BUFFER_BYTES: usize = 0;

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Authenticates, then upgrades. A bad or expired token is a 401 before any upgrade.
pub async fn upgrade(
    State(state): State<AppState>,
    AppPath(app_id): AppPath<String>,
    AppQuery(query): AppQuery<TokenQuery>,
    headers: HeaderMap,
    upgrade: Result<handshake::Upgrade, ApiError>,
) -> Result<Response, ApiError> {
    let app_id = AppId::parse(&app_id)?;
    let secret = state.apps.get(&app_id).ok_or_else(|| ApiError::AppNotFound(app_id.to_string()))?;
    let header_token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = query.token.or(header_token).ok_or_else(|| {
        ApiError::Unauthorized("a user token is required: ?token=<JWT> or Authorization: Bearer".into())
    })?;
    let claims = verify_user_token(&app_id, secret, &token).map_err(ApiError::Unauthorized)?;
    let upgrade = upgrade?;
    let guard = state.limits.open_connection(&app_id).ok_or(ApiError::TooManyConnections)?;
    let connection = socket::Connection {
        state: state.clone(),
        app_id,
        user_id: claims.user_id,
        expires_at: socket::expires_at(claims.expires_at),
        _guard: guard,
    };
    // Counted from now, not from the upgrade: a shutdown between the 101 and the session's start must still wait
    // for the session to send its close frame.
    let tracked = state.sessions.token();
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_FRAME_BYTES))
        .max_frame_size(Some(MAX_CLIENT_FRAME_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES);
    Ok(upgrade.accept(config, move |socket| {
        // The loop's future is built here, so that what it was made from is not kept beside it, and boxed: a future
        // that awaits one it holds keeps room for it twice.
        let session = Box::pin(socket::run(socket, connection));
        async move {
            session.await;
            drop(tracked);
        }
    }))
}
