//! The imperative shell around `Session`: reads frames and hub events, feeds the session, and carries out its
//! outputs (send, fetch from the store, watch on the hub, close). Writes run as tasks beside the loop.

use std::{collections::HashMap, sync::Arc, time::Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use super::{
    frames::{self, ClientFrame, RequestId, SnapshotContext},
    session::{CloseReason, FetchId, Output, Request, Resume, Session},
    writes,
};
use crate::{
    api::{auth::verify_user_token, error::ApiError},
    app::AppState,
    domain::ids::{AppId, ConversationId, Seq, UserId},
    hub::{outbox, HubKey, SubscriberId},
    store::{MessageWindow, StoreResult},
};

/// A write to the socket that takes longer than this means the client stopped reading: the session ends.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Events taken from the outbox per wakeup; bounds the latency one busy session adds to its own frames.
const MAX_EVENTS_PER_FLUSH: usize = 64;
/// Store reads and writes one session may have in flight; another write beyond that is refused.
const MAX_TASKS_IN_FLIGHT: usize = 32;

/// Results of tasks the loop started.
enum Done {
    Window { fetch: FetchId, result: StoreResult<MessageWindow>, history: crate::hub::history::Recent },
    Reply(Utf8Bytes),
}

pub struct Connection {
    pub state: AppState,
    pub app_id: AppId,
    pub user_id: UserId,
    pub expires_at: Option<Instant>,
    /// Counts this connection against its app's limit until the session ends.
    pub _guard: crate::limits::ConnectionGuard,
}

pub async fn run(socket: WebSocket, connection: Connection) {
    let Connection { state, app_id, user_id, expires_at, _guard } = connection;
    let frame_limiter = state.limits.frame_limiter();
    let (mut sink, mut stream) = socket.split();
    // Bounded by config: a session this far behind is cut off as slow rather than let the hub wait.
    let (outbox, mut events_rx) = outbox::channel(state.config.outbox_events);
    let slow = outbox.cancelled_token();
    let user_key = HubKey::User { app_id: app_id.clone(), user_id: user_id.clone() };
    let user_subscriber = state.hub.subscribe(user_key.clone(), outbox.clone());
    let mut watched: HashMap<ConversationId, SubscriberId> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(MAX_TASKS_IN_FLIGHT);
    let writes_in_flight = Arc::new(Semaphore::new(MAX_TASKS_IN_FLIGHT));
    let mut session = Session::with_max_subscriptions(
        user_id.clone(),
        expires_at,
        Instant::now(),
        state.limits.subscriptions_per_connection(),
    );
    state.metrics.connections.inc();
    let conversation_key = |conversation_id: &ConversationId| HubKey::Conversation {
        app_id: app_id.clone(),
        conversation_id: conversation_id.clone(),
    };

    'run: loop {
        let mut sent = false;
        while let Some(output) = session.poll_output() {
            let context = SnapshotContext { app: &app_id, links: &state.links, me: Some(&user_id) };
            let frame = match output {
                Output::Forward(event) => Message::Text(event.frame.clone()),
                Output::Snapshot { conversation_id, window, resumed } => {
                    Message::Text(frames::snapshot_frame(&conversation_id, &window, &context, resumed))
                }
                Output::Resumed { conversation_id, from_seq, seq } => {
                    Message::Text(frames::resumed_frame(&conversation_id, from_seq, seq))
                }
                Output::Page { conversation_id, window } => {
                    Message::Text(frames::page_frame(&conversation_id, &window, &context))
                }
                Output::Ok { id } => Message::Text(frames::ok_frame(&id, json!({}))),
                Output::Error { id, error } => {
                    Message::Text(frames::error_frame(Some(&id), error.code(), &[error.reason()]))
                }
                Output::SubscriptionError { conversation_id, error } => {
                    Message::Text(frames::subscription_error_frame(&conversation_id, error.code(), &[error.reason()]))
                }
                Output::Fetch { fetch, conversation_id, before, limit, history_after } => {
                    let (store, history, app_id, user_id, done_tx) =
                        (state.store.clone(), state.history.clone(), app_id.clone(), user_id.clone(), done_tx.clone());
                    // A read per subscription at most; its answer comes back through `done_rx`.
                    tokio::spawn(async move {
                        let result = store.message_window(&app_id, &conversation_id, &user_id, before, limit).await;
                        // After the read: history then holds everything up to the seq it read, or has lost it.
                        let history = match history_after {
                            Some(after) => history.since(&app_id, &conversation_id, after),
                            None => Default::default(),
                        };
                        let _ = done_tx.send(Done::Window { fetch, result, history }).await;
                    });
                    continue;
                }
                Output::Watch(conversation_id) => {
                    // Watching twice would deliver every event twice into this outbox.
                    if let std::collections::hash_map::Entry::Vacant(entry) = watched.entry(conversation_id) {
                        let subscriber = state.hub.subscribe(conversation_key(entry.key()), outbox.clone());
                        entry.insert(subscriber);
                        state.metrics.subscriptions.inc();
                    }
                    continue;
                }
                Output::Unwatch(conversation_id) => {
                    if let Some(subscriber) = watched.remove(&conversation_id) {
                        state.metrics.subscriptions.dec();
                        state.hub.unsubscribe(&conversation_key(&conversation_id), subscriber);
                    }
                    continue;
                }
                Output::Ping => Message::Ping(bytes::Bytes::new()),
                Output::Close(reason) => {
                    if reason == CloseReason::SlowConsumer {
                        state.metrics.slow_consumer_disconnects.inc();
                    }
                    let close = CloseFrame { code: reason.code(), reason: Utf8Bytes::from_static(reason.reason()) };
                    // Best effort: a client that stopped reading may never take the close frame.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(close)))).await;
                    break 'run;
                }
            };
            // Queue without flushing: everything the session produced goes out in one flush below.
            if !guarded(sink.feed(frame), &slow, &state.shutdown).await {
                stalled(&mut session, &state);
                continue;
            }
            sent = true;
        }
        if sent && !guarded(sink.flush(), &slow, &state.shutdown).await {
            stalled(&mut session, &state);
            continue;
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            incoming = stream.next() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(text))) => {
                        session.handle_activity(Instant::now());
                                                if frame_limiter.as_ref().is_some_and(|limiter| !limiter.allow()) {
                            let id = frames::parse_client_frame(&text).ok().map(|(id, _)| id);
                            let reason = "too many frames per second on this connection; slow down".to_owned();
                            Some(frames::error_frame(id.as_ref(), "TOO_MANY_REQUESTS", &[reason]))
                        } else {
                            handle_text(&text, &mut session, &state, &app_id, &user_id, &writes_in_flight, &done_tx)
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        session.handle_activity(Instant::now());
                        Some(frames::error_frame(None, "INVALID_FRAME", &["frames are JSON text; binary frames are not supported".into()]))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        session.handle_activity(Instant::now());
                        None
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(error)) => {
                        tracing::debug!(cause = %error, "socket read failed");
                        let close = CloseFrame { code: 1009, reason: Utf8Bytes::from_static("frame too large or malformed") };
                        let _ = sink.send(Message::Close(Some(close))).await;
                        break;
                    }
                };
                if let Some(reply) = reply {
                    if sink.send(Message::Text(reply)).await.is_err() {
                        break;
                    }
                }
            }
            Some(event) = events_rx.recv() => {
                session.handle_event(&event);
                // Take whatever else is already queued, so one flush (one syscall) carries it all.
                for _ in 1..MAX_EVENTS_PER_FLUSH {
                    match events_rx.try_recv() {
                        Ok(event) => session.handle_event(&event),
                        Err(_) => break,
                    }
                }
            }
            Some(done) = done_rx.recv() => match done {
                Done::Window { fetch, result: Ok(window), history } => session.handle_window(fetch, window, history),
                Done::Window { fetch, result: Err(error), .. } => {
                    tracing::warn!(cause = %error, "window read failed");
                    session.handle_fetch_failed(fetch);
                }
                Done::Reply(frame) => {
                    if sink.send(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
            },
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            () = slow.cancelled() => session.handle_slow(),
            () = state.shutdown.cancelled() => session.handle_shutdown(),
        }
    }

    state.hub.unsubscribe(&user_key, user_subscriber);
    for (conversation_id, subscriber) in watched {
        state.metrics.subscriptions.dec();
        state.hub.unsubscribe(&conversation_key(&conversation_id), subscriber);
    }
    state.metrics.connections.dec();
}

/// A write did not complete: the gateway is shutting down, or the client is too slow or gone.
fn stalled(session: &mut Session, state: &AppState) {
    if state.shutdown.is_cancelled() {
        session.handle_shutdown();
    } else {
        session.handle_slow();
    }
}

/// How long a closing session tries to deliver its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a socket write unless the session is cut off as slow, the gateway shuts down, or the write stalls.
/// Returns whether the write completed.
async fn guarded<E>(
    write: impl std::future::Future<Output = Result<(), E>>,
    slow: &tokio_util::sync::CancellationToken,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    tokio::select! {
        result = tokio::time::timeout(WRITE_TIMEOUT, write) => matches!(result, Ok(Ok(()))),
        () = slow.cancelled() => false,
        () = shutdown.cancelled() => false,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Handles one text frame; returns a frame to send at once, if any.
fn handle_text(
    text: &str,
    session: &mut Session,
    state: &AppState,
    app_id: &AppId,
    user_id: &UserId,
    writes_in_flight: &Arc<Semaphore>,
    done_tx: &mpsc::Sender<Done>,
) -> Option<Utf8Bytes> {
    let (id, frame) = match frames::parse_client_frame(text) {
        Ok(parsed) => parsed,
        Err(error) => return Some(frames::error_frame(error.id.as_ref(), "INVALID_FRAME", &[error.reason])),
    };
    let conversation = |raw: &str| ConversationId::parse(raw).map_err(|e| invalid(&id, e.to_string()));
    let request = match frame {
        ClientFrame::SubscribeMessages { conversation_id, limit, resume, .. } => match conversation(&conversation_id) {
            Ok(conversation_id) => Request::SubscribeMessages {
                id: id.clone(),
                conversation_id,
                limit,
                resume: resume.map(|resume| Resume {
                    from_seq: Seq(resume.from_seq),
                    oldest: resume.oldest_seq.map(Seq),
                    loaded_all: resume.loaded_all,
                }),
            },
            Err(reply) => return Some(reply),
        },
        ClientFrame::LoadMore { conversation_id, count, .. } => match conversation(&conversation_id) {
            Ok(conversation_id) => Request::LoadMore { id: id.clone(), conversation_id, count },
            Err(reply) => return Some(reply),
        },
        ClientFrame::Unsubscribe { conversation_id, .. } => match conversation(&conversation_id) {
            Ok(conversation_id) => Request::Unsubscribe { id: id.clone(), conversation_id },
            Err(reply) => return Some(reply),
        },
        ClientFrame::UpdateToken { token, .. } => {
            let secret = state.apps.get(app_id).expect("the session's app exists");
            match verify_user_token(app_id, secret, &token) {
                Ok(claims) if &claims.user_id == user_id => {
                    Request::TokenRefreshed { id: id.clone(), expires_at: claims.expires_at.map(instant_of_unix) }
                }
                Ok(_) => {
                    return Some(frames::error_frame(Some(&id), "FORBIDDEN", &["the token is for another user".into()]))
                }
                Err(reason) => return Some(frames::error_frame(Some(&id), "UNAUTHORIZED", &[reason])),
            }
        }
        write => {
            let Ok(permit) = Arc::clone(writes_in_flight).try_acquire_owned() else {
                let reason = "too many requests in flight on this connection; wait for replies".to_owned();
                return Some(frames::error_frame(Some(&id), "TOO_MANY_REQUESTS", &[reason]));
            };
            let (state, app_id, user_id, done_tx) = (state.clone(), app_id.clone(), user_id.clone(), done_tx.clone());
            // Writes run beside the loop so a commit never delays this session's event delivery.
            tokio::spawn(async move {
                let reply = match writes::perform(&state, &app_id, &user_id, write).await {
                    Ok(result) => {
                        let value = match result.message_id {
                            Some(message_id) => json!({ "messageId": message_id.as_str() }),
                            None => json!({}),
                        };
                        frames::ok_frame(&id, value)
                    }
                    Err(error) => frames::error_frame(Some(&id), error.code(), &error.reasons()),
                };
                drop(permit);
                let _ = done_tx.send(Done::Reply(reply)).await;
            });
            return None;
        }
    };
    session.handle_request(request);
    None
}

fn invalid(id: &RequestId, reason: String) -> Utf8Bytes {
    let error = ApiError::bad_request("INVALID_REQUEST", reason);
    frames::error_frame(Some(id), error.code(), &error.reasons())
}

/// Converts a token's `exp` (Unix seconds) to a monotonic deadline.
fn instant_of_unix(unix_seconds: u64) -> Instant {
    let now_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    Instant::now() + std::time::Duration::from_secs(unix_seconds.saturating_sub(now_unix))
}

pub fn expires_at(unix_seconds: Option<u64>) -> Option<Instant> {
    unix_seconds.map(instant_of_unix)
}
