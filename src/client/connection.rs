//! The task that owns the client's socket: sends requests, matches replies by id, and keeps each subscription's
//! window up to date.

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

use super::{window::Window, ClientConfig, ClientError, SubscriptionState};

pub enum Command {
    Request { frame: Value, reply_tx: oneshot::Sender<Result<Value, ClientError>> },
    Subscribe { conversation_id: String, limit: Option<u32>, state_tx: watch::Sender<SubscriptionState> },
    Unsubscribe { conversation_id: String, reply_tx: oneshot::Sender<()> },
    LoadMore { conversation_id: String, count: Option<u32>, reply_tx: oneshot::Sender<Result<(), ClientError>> },
    Close,
}

/// The window size `loadMore` asks for when no count is given (seed 004).
const DEFAULT_LOAD_MORE: u32 = 30;

struct Subscription {
    window: Window,
    state_tx: watch::Sender<SubscriptionState>,
    loading: Option<Loading>,
}

/// A `loadMore` in flight. Calls made meanwhile join it: together they load as many as the largest asked for
/// (seed 004: parallel calls load one page).
struct Loading {
    requested: u32,
    wanted: u32,
    waiters: Vec<oneshot::Sender<Result<(), ClientError>>>,
}

enum Pending {
    Reply(oneshot::Sender<Result<Value, ClientError>>),
    /// The reply to a subscribe: an error ends the subscription.
    Subscribe(String),
    LoadMore(String),
    Unsubscribe(oneshot::Sender<()>),
}

/// Connects, then runs the connection on its own task.
pub async fn spawn(
    config: ClientConfig,
    user_id: std::sync::Arc<str>,
    commands_rx: mpsc::Receiver<Command>,
) -> Result<(), ClientError> {
    let url = format!("{}/v1/{}/realtime", config.url.trim_end_matches('/'), config.app_id);
    let mut request = url.into_client_request().map_err(|error| ClientError::Connect(error.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", config.token))
        .map_err(|error| ClientError::Connect(error.to_string()))?;
    request.headers_mut().insert("Authorization", bearer);
    let (socket, _) =
        tokio_tungstenite::connect_async(request).await.map_err(|error| ClientError::Connect(error.to_string()))?;
    tokio::spawn(run(socket, config, user_id, commands_rx));
    Ok(())
}

async fn run(
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    config: ClientConfig,
    user_id: std::sync::Arc<str>,
    mut commands_rx: mpsc::Receiver<Command>,
) {
    let (mut sink, mut stream) = socket.split();
    let mut next_id: u64 = 0;
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut subscriptions: HashMap<String, Subscription> = HashMap::new();
    let end_reason = loop {
        tokio::select! {
            command = commands_rx.recv() => {
                let Some(command) = command else { break "the session was dropped".to_owned() };
                next_id += 1;
                let id = next_id.to_string();
                let frame = match command {
                    Command::Request { mut frame, reply_tx } => {
                        frame["id"] = json!(id);
                        pending.insert(id, Pending::Reply(reply_tx));
                        frame
                    }
                    Command::Subscribe { conversation_id, limit, state_tx } => {
                        let mut frame = json!({ "type": "subscribeMessages", "id": id, "conversationId": conversation_id });
                        if let Some(limit) = limit {
                            frame["limit"] = json!(limit);
                        }
                        pending.insert(id, Pending::Subscribe(conversation_id.clone()));
                        subscriptions.insert(conversation_id, Subscription { window: Window::default(), state_tx, loading: None });
                        frame
                    }
                    Command::LoadMore { conversation_id, count, reply_tx } => {
                        let count = count.unwrap_or(DEFAULT_LOAD_MORE);
                        let Some(subscription) = subscriptions.get_mut(&conversation_id) else {
                            let _ = reply_tx.send(Err(ClientError::Refused {
                                code: "NOT_SUBSCRIBED".into(),
                                reasons: vec!["not subscribed".into()],
                            }));
                            continue;
                        };
                        if let Some(loading) = &mut subscription.loading {
                            loading.wanted = loading.wanted.max(count);
                            loading.waiters.push(reply_tx);
                            continue;
                        }
                        subscription.loading = Some(Loading { requested: count, wanted: count, waiters: vec![reply_tx] });
                        pending.insert(id.clone(), Pending::LoadMore(conversation_id.clone()));
                        json!({ "type": "loadMore", "id": id, "conversationId": conversation_id, "count": count })
                    }
                    Command::Unsubscribe { conversation_id, reply_tx } => {
                        if let Some(subscription) = subscriptions.remove(&conversation_id) {
                            subscription.state_tx.send_replace(SubscriptionState::Unsubscribed);
                        }
                        pending.insert(id.clone(), Pending::Unsubscribe(reply_tx));
                        json!({ "type": "unsubscribe", "id": id, "conversationId": conversation_id })
                    }
                    Command::Close => {
                        let _ = sink.send(Message::Close(None)).await;
                        break "closed by the client".to_owned();
                    }
                };
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break "the connection failed".to_owned();
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(observer) = &config.observer {
                        observer(text.as_str());
                    }
                    if let Some(frame) = handle_frame(text.as_str(), &mut pending, &mut subscriptions, &user_id, &mut next_id) {
                        if sink.send(Message::text(frame.to_string())).await.is_err() {
                            break "the connection failed".to_owned();
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(frame) => format!("closed by the server: {} {}", u16::from(frame.code), frame.reason),
                        None => "closed by the server".to_owned(),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break format!("connection error: {error}"),
                None => break "the connection ended".to_owned(),
            }
        }
    };
    for (_, subscription) in subscriptions {
        subscription.state_tx.send_replace(SubscriptionState::Error(end_reason.clone()));
    }
    for (_, waiting) in pending {
        if let Pending::Reply(reply_tx) = waiting {
            let _ = reply_tx.send(Err(ClientError::Closed));
        }
    }
}

/// Applies one server frame; returns a frame to send in response (the next page of a coalesced loadMore).
fn handle_frame(
    text: &str,
    pending: &mut HashMap<String, Pending>,
    subscriptions: &mut HashMap<String, Subscription>,
    user_id: &str,
    next_id: &mut u64,
) -> Option<Value> {
    let Ok(frame) = serde_json::from_str::<Value>(text) else { return None };
    let conversation_id = frame["conversationId"].as_str().unwrap_or_default();
    let seq = frame["seq"].as_i64().unwrap_or(0);
    match frame["type"].as_str().unwrap_or_default() {
        "ok" | "error" => {
            let waiting = frame["id"].as_str().and_then(|id| pending.remove(id))?;
            let result = if frame["type"] == "ok" {
                Ok(frame["result"].clone())
            } else {
                let reasons = frame["reasons"]
                    .as_array()
                    .map(|reasons| reasons.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                Err(ClientError::Refused { code: frame["errorCode"].as_str().unwrap_or_default().to_owned(), reasons })
            };
            match waiting {
                Pending::Reply(reply_tx) => {
                    let _ = reply_tx.send(result);
                }
                Pending::Subscribe(conversation_id) => {
                    if let Err(error) = result {
                        if let Some(subscription) = subscriptions.remove(&conversation_id) {
                            subscription.state_tx.send_replace(SubscriptionState::Error(error.to_string()));
                        }
                    }
                }
                Pending::Unsubscribe(reply_tx) => {
                    let _ = reply_tx.send(());
                }
                Pending::LoadMore(conversation_id) => {
                    let subscription = subscriptions.get_mut(&conversation_id)?;
                    let mut loading = subscription.loading.take()?;
                    let more = loading.wanted.saturating_sub(loading.requested);
                    let complete =
                        matches!(subscription.window.state(), SubscriptionState::Active { loaded_all: true, .. });
                    if result.is_ok() && more > 0 && !complete {
                        *next_id += 1;
                        let id = next_id.to_string();
                        loading.requested = more;
                        loading.wanted = more;
                        subscription.loading = Some(loading);
                        pending.insert(id.clone(), Pending::LoadMore(conversation_id.clone()));
                        return Some(
                            json!({ "type": "loadMore", "id": id, "conversationId": conversation_id, "count": more }),
                        );
                    }
                    for waiter in loading.waiters {
                        let _ = waiter.send(result.clone().map(drop));
                    }
                }
            }
        }
        "snapshot" => {
            let subscription = subscriptions.get_mut(conversation_id)?;
            let messages = serde_json::from_value(frame["messages"].clone()).ok();
            subscription.window.reset(seq, messages, frame["loadedAll"].as_bool().unwrap_or(false));
            subscription.state_tx.send_replace(subscription.window.state());
        }
        "page" => {
            let subscription = subscriptions.get_mut(conversation_id)?;
            let messages = serde_json::from_value(frame["messages"].clone()).unwrap_or_default();
            subscription.window.append_page(seq, messages, frame["loadedAll"].as_bool().unwrap_or(false));
            subscription.state_tx.send_replace(subscription.window.state());
        }
        "event" => {
            let subscription = subscriptions.get_mut(conversation_id)?;
            if subscription.window.apply_event(seq, &frame["event"], user_id) {
                subscription.state_tx.send_replace(subscription.window.state());
            }
        }
        "subscriptionError" => {
            if let Some(subscription) = subscriptions.remove(conversation_id) {
                let reason = format!("{}: {}", frame["errorCode"].as_str().unwrap_or_default(), frame["reasons"]);
                subscription.state_tx.send_replace(SubscriptionState::Error(reason));
            }
        }
        _ => {}
    }
    None
}
