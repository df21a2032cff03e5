//! The task that owns the client's socket: sends requests, matches replies by id, and keeps each subscription's
//! window up to date.

use std::{collections::HashMap, time::Duration};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

use super::{
    live::{LiveKey, LiveKind, LiveState},
    window::{Place, Window},
    ClientConfig, ClientError, SubscriptionState, UserSubscriptionState,
};

pub enum Command {
    Request {
        frame: Value,
        reply_tx: oneshot::Sender<Result<Value, ClientError>>,
    },
    Subscribe {
        conversation_id: String,
        limit: Option<u32>,
        state_tx: watch::Sender<SubscriptionState>,
    },
    Unsubscribe {
        conversation_id: String,
        reply_tx: oneshot::Sender<()>,
    },
    LoadMore {
        conversation_id: String,
        count: Option<u32>,
        reply_tx: oneshot::Sender<Result<(), ClientError>>,
    },
    SetToken {
        token: String,
        reply_tx: oneshot::Sender<Result<Value, ClientError>>,
    },
    SubscribeUser {
        user_id: String,
        state_tx: watch::Sender<UserSubscriptionState>,
    },
    UnsubscribeUser {
        user_id: String,
        reply_tx: oneshot::Sender<()>,
    },
    /// `fields` are added to every subscribe of it (a conversation list's `filter`), reconnects included.
    SubscribeLive {
        key: LiveKey,
        fields: Option<Value>,
        state_tx: watch::Sender<LiveState<Value>>,
    },
    UnsubscribeLive {
        key: LiveKey,
        reply_tx: oneshot::Sender<()>,
    },
    Close,
}

/// The window size `loadMore` asks for when no count is given (seed 004).
const DEFAULT_LOAD_MORE: u32 = 30;

struct Subscription {
    window: Window,
    state_tx: watch::Sender<SubscriptionState>,
    loading: Option<Loading>,
    /// The window size asked for, asked for again after a reconnect.
    limit: Option<u32>,
    /// A hole was found and the subscription asked again with a resume: events of the old one are ignored until
    /// the answer (`resumed` or `snapshot`) arrives.
    recovering: bool,
}

/// A `loadMore` in flight. Calls made meanwhile join it: together they load as many as the largest asked for
/// (seed 004: parallel calls load one page).
struct Loading {
    requested: u32,
    wanted: u32,
    waiters: Vec<oneshot::Sender<Result<(), ClientError>>>,
}

/// A user subscription: the state with the highest `seq` seen wins.
struct UserSub {
    state_tx: watch::Sender<UserSubscriptionState>,
    seq: Option<i64>,
}

enum Pending {
    Reply(oneshot::Sender<Result<Value, ClientError>>),
    /// The reply to a subscribe: an error ends the subscription.
    Subscribe(String),
    SubscribeUser(String),
    SubscribeLive(LiveKey),
    LoadMore(String),
    Unsubscribe(oneshot::Sender<()>),
    /// A reply nobody waits for (the unsubscribe of a recovery).
    Discard,
}

/// How long the first reconnect waits; each attempt doubles it, up to `MAX_BACKOFF`, with ±50% jitter so that
/// clients dropped together do not come back together.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Attempts before the client gives up and ends every subscription in error.
const MAX_RECONNECT_ATTEMPTS: u32 = 30;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection ended.
enum End {
    /// The client closed it, or dropped the session: end every subscription.
    Closed(String),
    /// The server refused the session for good (an expired or invalid token): end every subscription in error.
    Fatal(String),
    /// The network or the server dropped it: reconnect and resume.
    Dropped(String),
}

/// Connects once, then runs the connection on its own task, reconnecting when it drops.
pub async fn spawn(
    config: ClientConfig,
    user_id: std::sync::Arc<str>,
    commands_rx: mpsc::Receiver<Command>,
) -> Result<(), ClientError> {
    let socket = connect(&config).await.map_err(|(error, _)| error)?;
    tokio::spawn(run(socket, config, user_id, commands_rx));
    Ok(())
}

/// Connects and authenticates. The flag says whether trying again could help.
async fn connect(config: &ClientConfig) -> Result<Socket, (ClientError, bool)> {
    let url = format!("{}/v1/{}/realtime", config.url.trim_end_matches('/'), config.app_id);
    let mut request = url.into_client_request().map_err(|error| (ClientError::Connect(error.to_string()), false))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", config.token))
        .map_err(|error| (ClientError::Connect(error.to_string()), false))?;
    request.headers_mut().insert("Authorization", bearer);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status();
            let retry = status.is_server_error() || status == 429;
            Err((ClientError::Connect(format!("the gateway answered {status}")), retry))
        }
        Err(error) => Err((ClientError::Connect(error.to_string()), true)),
    }
}

struct Connection {
    config: ClientConfig,
    user_id: std::sync::Arc<str>,
    next_id: u64,
    pending: HashMap<String, Pending>,
    subscriptions: HashMap<String, Subscription>,
    users: HashMap<String, UserSub>,
    /// Each live subscription's latest state frame.
    live: HashMap<LiveKey, watch::Sender<LiveState<Value>>>,
    /// The fields a live subscription's subscribe carries besides its id.
    live_fields: HashMap<LiveKey, Value>,
}

async fn run(
    mut socket: Socket,
    config: ClientConfig,
    user_id: std::sync::Arc<str>,
    mut commands_rx: mpsc::Receiver<Command>,
) {
    let mut connection = Connection {
        config,
        user_id,
        next_id: 0,
        pending: HashMap::new(),
        subscriptions: HashMap::new(),
        users: HashMap::new(),
        live: HashMap::new(),
        live_fields: HashMap::new(),
    };
    let reason = loop {
        let end = connection.serve(&mut socket, &mut commands_rx).await;
        // Requests in flight are lost with the connection; their callers may try again.
        for (_, waiting) in connection.pending.drain() {
            if let Pending::Reply(reply_tx) = waiting {
                let _ = reply_tx.send(Err(ClientError::Closed));
            }
        }
        for subscription in connection.subscriptions.values_mut() {
            for waiter in subscription.loading.take().map(|loading| loading.waiters).unwrap_or_default() {
                let _ = waiter.send(Err(ClientError::Closed));
            }
        }
        let dropped = match end {
            End::Dropped(reason) => reason,
            End::Closed(reason) | End::Fatal(reason) => break reason,
        };
        tracing::debug!(%dropped, "connection lost; reconnecting");
        match reconnect(&connection.config).await {
            Ok(new_socket) => {
                socket = new_socket;
                if let Err(reason) = connection.resubscribe(&mut socket).await {
                    break reason;
                }
            }
            Err(reason) => break reason,
        }
    };
    // Subscriptions stay active through transient drops; only the end of the session ends them.
    for (_, subscription) in connection.subscriptions {
        subscription.state_tx.send_replace(SubscriptionState::Error(reason.clone()));
    }
    for (_, user) in connection.users {
        user.state_tx.send_replace(UserSubscriptionState::Error(reason.clone()));
    }
    for (_, state_tx) in connection.live {
        state_tx.send_replace(LiveState::Error(reason.clone()));
    }
}

async fn reconnect(config: &ClientConfig) -> Result<Socket, String> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_RECONNECT_ATTEMPTS {
        let jitter = 0.5 + rand::random::<f64>();
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        match connect(config).await {
            Ok(socket) => return Ok(socket),
            Err((error, false)) => return Err(error.to_string()),
            Err((error, true)) => tracing::debug!(attempt, %error, "reconnect failed"),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Err(format!("could not reconnect after {MAX_RECONNECT_ATTEMPTS} attempts"))
}

impl Connection {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Subscribes again after a reconnect, resuming each window from the last `seq` it saw.
    async fn resubscribe(&mut self, socket: &mut Socket) -> Result<(), String> {
        let conversations: Vec<String> = self.subscriptions.keys().cloned().collect();
        for conversation_id in conversations {
            let id = self.new_id();
            let subscription = &self.subscriptions[&conversation_id];
            let mut frame = json!({ "type": "subscribeMessages", "id": id, "conversationId": conversation_id });
            if let Some(limit) = subscription.limit {
                frame["limit"] = json!(limit);
            }
            if let Some(resume) = subscription.window.resume_point() {
                frame["resume"] = resume;
            }
            // A new socket carries nothing of the old subscription.
            self.subscriptions.get_mut(&conversation_id).expect("listed above").recovering = false;
            self.pending.insert(id, Pending::Subscribe(conversation_id));
            socket.send(Message::text(frame.to_string())).await.map_err(|error| error.to_string())?;
        }
        // A user subscription starts again from the state as it is; the old seq still orders what comes.
        let users: Vec<String> = self.users.keys().cloned().collect();
        for user_id in users {
            let id = self.new_id();
            let frame = json!({ "type": "subscribeUser", "id": id, "userId": user_id });
            self.pending.insert(id, Pending::SubscribeUser(user_id));
            socket.send(Message::text(frame.to_string())).await.map_err(|error| error.to_string())?;
        }
        // So does a live one; a window that grew past its default asks for as many as it held (up to what a
        // subscribe may). One that holds fewer than the default was not full: the default again.
        let live: Vec<LiveKey> = self.live.keys().cloned().collect();
        for key in live {
            let id = self.new_id();
            let mut frame = live_subscribe_frame(&id, &key, self.live_fields.get(&key));
            if let LiveState::Active(Some(window)) = &*self.live[&key].borrow() {
                let (field, default, max) = match key.kind {
                    LiveKind::Participants => ("participants", DEFAULT_PARTICIPANTS_LIMIT, MAX_PARTICIPANTS_LIMIT),
                    LiveKind::Conversations => ("conversations", DEFAULT_CONVERSATIONS_LIMIT, MAX_CONVERSATIONS_LIMIT),
                    _ => ("", 0, 0),
                };
                if let Some(held) = window[field].as_array().filter(|held| held.len() > default) {
                    frame["limit"] = json!(held.len().min(max));
                }
            }
            self.pending.insert(id, Pending::SubscribeLive(key));
            socket.send(Message::text(frame.to_string())).await.map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    async fn serve(&mut self, socket: &mut Socket, commands_rx: &mut mpsc::Receiver<Command>) -> End {
        loop {
            tokio::select! {
                command = commands_rx.recv() => {
                    let Some(command) = command else { return End::Closed("the session was dropped".into()) };
                    let id = self.new_id();
                    let frame = match command {
                        Command::Request { mut frame, reply_tx } => {
                            frame["id"] = json!(id);
                            self.pending.insert(id, Pending::Reply(reply_tx));
                            frame
                        }
                        Command::Subscribe { conversation_id, limit, state_tx } => {
                            let mut frame = json!({ "type": "subscribeMessages", "id": id, "conversationId": conversation_id });
                            if let Some(limit) = limit {
                                frame["limit"] = json!(limit);
                            }
                            self.pending.insert(id, Pending::Subscribe(conversation_id.clone()));
                            let subscription = Subscription { window: Window::default(), state_tx, loading: None, limit, recovering: false };
                            self.subscriptions.insert(conversation_id, subscription);
                            frame
                        }
                        Command::LoadMore { conversation_id, count, reply_tx } => {
                            let count = count.unwrap_or(DEFAULT_LOAD_MORE);
                            let Some(subscription) = self.subscriptions.get_mut(&conversation_id) else {
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
                            self.pending.insert(id.clone(), Pending::LoadMore(conversation_id.clone()));
                            json!({ "type": "loadMore", "id": id, "conversationId": conversation_id, "count": count })
                        }
                        Command::Unsubscribe { conversation_id, reply_tx } => {
                            if let Some(subscription) = self.subscriptions.remove(&conversation_id) {
                                subscription.state_tx.send_replace(SubscriptionState::Unsubscribed);
                            }
                            self.pending.insert(id.clone(), Pending::Unsubscribe(reply_tx));
                            json!({ "type": "unsubscribe", "id": id, "conversationId": conversation_id })
                        }
                        Command::SubscribeUser { user_id, state_tx } => {
                            self.pending.insert(id.clone(), Pending::SubscribeUser(user_id.clone()));
                            self.users.insert(user_id.clone(), UserSub { state_tx, seq: None });
                            json!({ "type": "subscribeUser", "id": id, "userId": user_id })
                        }
                        Command::UnsubscribeUser { user_id, reply_tx } => {
                            if let Some(user) = self.users.remove(&user_id) {
                                user.state_tx.send_replace(UserSubscriptionState::Unsubscribed);
                            }
                            self.pending.insert(id.clone(), Pending::Unsubscribe(reply_tx));
                            json!({ "type": "unsubscribeUser", "id": id, "userId": user_id })
                        }
                        Command::SubscribeLive { key, fields, state_tx } => {
                            let frame = live_subscribe_frame(&id, &key, fields.as_ref());
                            match fields {
                                Some(fields) => self.live_fields.insert(key.clone(), fields),
                                None => self.live_fields.remove(&key),
                            };
                            self.pending.insert(id, Pending::SubscribeLive(key.clone()));
                            self.live.insert(key, state_tx);
                            frame
                        }
                        Command::UnsubscribeLive { key, reply_tx } => {
                            if let Some(state_tx) = self.live.remove(&key) {
                                state_tx.send_replace(LiveState::Unsubscribed);
                            }
                            self.live_fields.remove(&key);
                            self.pending.insert(id.clone(), Pending::Unsubscribe(reply_tx));
                            key.kind.frame(&key.kind.unsubscribe_type(), &id, &key.id)
                        }
                        Command::SetToken { token, reply_tx } => {
                            // Kept for reconnects, and sent now.
                            self.config.token = token.clone();
                            self.pending.insert(id.clone(), Pending::Reply(reply_tx));
                            json!({ "type": "updateToken", "id": id, "token": token })
                        }
                        Command::Close => {
                            let _ = socket.send(Message::Close(None)).await;
                            return End::Closed("closed by the client".into());
                        }
                    };
                    if let Err(error) = socket.send(Message::text(frame.to_string())).await {
                        return End::Dropped(error.to_string());
                    }
                }
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(observer) = &self.config.observer {
                            observer(text.as_str());
                        }
                        let user_id = self.user_id.clone();
                        if apply_user_frame(text.as_str(), &mut self.pending, &mut self.users)
                            || apply_live_frame(text.as_str(), &mut self.pending, &mut self.live)
                        {
                            continue;
                        }
                        for frame in handle_frame(text.as_str(), &mut self.pending, &mut self.subscriptions, &user_id, &mut self.next_id) {
                            if let Err(error) = socket.send(Message::text(frame.to_string())).await {
                                return End::Dropped(error.to_string());
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|frame| u16::from(frame.code));
                        let reason = match &frame {
                            Some(frame) => format!("closed by the server: {} {}", u16::from(frame.code), frame.reason),
                            None => "closed by the server".to_owned(),
                        };
                        // An expired token needs a new one from the application; anything else is worth a retry.
                        return if code == Some(4001) { End::Fatal(reason) } else { End::Dropped(reason) };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return End::Dropped(format!("connection error: {error}")),
                    None => return End::Dropped("the connection ended".into()),
                }
            }
        }
    }
}

/// Applies a frame of a user subscription (a `user` frame, or the reply to a `subscribeUser`); says whether it was
/// one.
fn apply_user_frame(text: &str, pending: &mut HashMap<String, Pending>, users: &mut HashMap<String, UserSub>) -> bool {
    let Ok(frame) = serde_json::from_str::<Value>(text) else { return false };
    match frame["type"].as_str().unwrap_or_default() {
        "user" => {
            let (Some(user_id), Some(seq)) = (frame["userId"].as_str(), frame["seq"].as_i64()) else { return true };
            if let Some(user) = users.get_mut(user_id).filter(|user| user.seq.is_none_or(|known| known < seq)) {
                user.seq = Some(seq);
                let latest_snapshot = serde_json::from_value(frame["user"].clone()).ok().flatten();
                user.state_tx.send_replace(UserSubscriptionState::Active { latest_snapshot });
            }
            true
        }
        "ok" | "error" => {
            let Some(id) = frame["id"].as_str() else { return false };
            let Some(Pending::SubscribeUser(_)) = pending.get(id) else { return false };
            let Some(Pending::SubscribeUser(user_id)) = pending.remove(id) else { return true };
            if frame["type"] == "error" {
                if let Some(user) = users.remove(&user_id) {
                    let reason = refusal(&frame);
                    user.state_tx.send_replace(UserSubscriptionState::Error(reason));
                }
            }
            true
        }
        _ => false,
    }
}

/// A refusal's code and reasons, as a subscription's error state carries them.
fn refusal(frame: &Value) -> String {
    format!("{}: {}", frame["errorCode"].as_str().unwrap_or_default(), frame["reasons"])
}

/// What a `subscribeParticipants` gets without a `limit`, and the most it may ask for.
const DEFAULT_PARTICIPANTS_LIMIT: usize = 10;
const MAX_PARTICIPANTS_LIMIT: usize = 50;
/// What a `subscribeConversations` gets without a `limit`, and the most it may ask for.
const DEFAULT_CONVERSATIONS_LIMIT: usize = 20;
const MAX_CONVERSATIONS_LIMIT: usize = 30;

fn live_subscribe_frame(id: &str, key: &LiveKey, fields: Option<&Value>) -> Value {
    let mut frame = key.kind.frame(&key.kind.subscribe_type(), id, &key.id);
    if let (Some(frame), Some(Value::Object(fields))) = (frame.as_object_mut(), fields) {
        frame.extend(fields.iter().map(|(name, value)| (name.clone(), value.clone())));
    }
    frame
}

/// Applies a frame of a live subscription (a state frame, its `subscriptionError`, or the reply to its subscribe);
/// says whether it was one.
fn apply_live_frame(
    text: &str,
    pending: &mut HashMap<String, Pending>,
    live: &mut HashMap<LiveKey, watch::Sender<LiveState<Value>>>,
) -> bool {
    let Ok(frame) = serde_json::from_str::<Value>(text) else { return false };
    let kind_of = |field: &str| frame[field].as_str().and_then(LiveKind::from_frame_type);
    let key_of = |kind: LiveKind| {
        let id = kind.id_field().and_then(|field| frame[field].as_str()).unwrap_or_default();
        LiveKey { kind, id: id.to_owned() }
    };
    match frame["type"].as_str().unwrap_or_default() {
        "subscriptionError" => {
            let Some(kind) = kind_of("subscription") else { return false };
            if let Some(state_tx) = live.remove(&key_of(kind)) {
                let reason = refusal(&frame);
                state_tx.send_replace(LiveState::Error(reason));
            }
            true
        }
        "ok" | "error" => {
            let Some(id) = frame["id"].as_str() else { return false };
            let Some(Pending::SubscribeLive(_)) = pending.get(id) else { return false };
            let Some(Pending::SubscribeLive(key)) = pending.remove(id) else { return true };
            if frame["type"] == "error" {
                if let Some(state_tx) = live.remove(&key) {
                    let reason = refusal(&frame);
                    state_tx.send_replace(LiveState::Error(reason));
                }
            }
            true
        }
        kind => {
            let Some(kind) = LiveKind::from_frame_type(kind) else { return false };
            if let Some(state_tx) = live.get(&key_of(kind)) {
                let null = frame[kind.frame_type()].is_null();
                state_tx.send_replace(LiveState::Active((!null).then(|| frame.clone())));
            }
            true
        }
    }
}

/// Applies one server frame; returns the frames to send in response (the next page of a coalesced loadMore, or
/// the frames that recover from a hole).
fn handle_frame(
    text: &str,
    pending: &mut HashMap<String, Pending>,
    subscriptions: &mut HashMap<String, Subscription>,
    user_id: &str,
    next_id: &mut u64,
) -> Vec<Value> {
    apply_frame(text, pending, subscriptions, user_id, next_id).unwrap_or_default()
}

fn apply_frame(
    text: &str,
    pending: &mut HashMap<String, Pending>,
    subscriptions: &mut HashMap<String, Subscription>,
    user_id: &str,
    next_id: &mut u64,
) -> Option<Vec<Value>> {
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
                // Taken by `apply_user_frame`, which sees every frame first.
                Pending::Discard | Pending::SubscribeUser(_) | Pending::SubscribeLive(_) => {}
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
                        return Some(vec![
                            json!({ "type": "loadMore", "id": id, "conversationId": conversation_id, "count": more }),
                        ]);
                    }
                    for waiter in loading.waiters {
                        let _ = waiter.send(result.clone().map(drop));
                    }
                }
            }
        }
        "snapshot" => {
            let subscription = subscriptions.get_mut(conversation_id)?;
            subscription.recovering = false;
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
        "resumed" => subscriptions.get_mut(conversation_id)?.recovering = false,
        "event" => {
            let subscription = subscriptions.get_mut(conversation_id)?;
            if subscription.recovering {
                return None;
            }
            match subscription.window.place(seq) {
                Place::Next => {}
                Place::Duplicate => return None,
                Place::Hole => return Some(recover(conversation_id, subscription, pending, next_id)),
            }
            subscription.window.observe_seq(seq);
            if subscription.window.apply_event(seq, &frame["event"], user_id) {
                subscription.state_tx.send_replace(subscription.window.state());
            }
        }
        "subscriptionError" => {
            if let Some(subscription) = subscriptions.remove(conversation_id) {
                let reason = refusal(&frame);
                subscription.state_tx.send_replace(SubscriptionState::Error(reason));
            }
        }
        _ => {}
    }
    None
}

/// Events are missing before the one just received: end the subscription on the server and subscribe again
/// from the last seq applied, which replays exactly what is missing (or sends a fresh snapshot). The
/// subscription stays active meanwhile.
fn recover(
    conversation_id: &str,
    subscription: &mut Subscription,
    pending: &mut HashMap<String, Pending>,
    next_id: &mut u64,
) -> Vec<Value> {
    tracing::debug!(%conversation_id, "hole in the event stream; resubscribing");
    subscription.recovering = true;
    let mut new_id = || {
        *next_id += 1;
        next_id.to_string()
    };
    let unsubscribe_id = new_id();
    pending.insert(unsubscribe_id.clone(), Pending::Discard);
    let subscribe_id = new_id();
    pending.insert(subscribe_id.clone(), Pending::Subscribe(conversation_id.to_owned()));
    let mut subscribe = json!({ "type": "subscribeMessages", "id": subscribe_id, "conversationId": conversation_id });
    if let Some(limit) = subscription.limit {
        subscribe["limit"] = json!(limit);
    }
    if let Some(resume) = subscription.window.resume_point() {
        subscribe["resume"] = resume;
    }
    vec![json!({ "type": "unsubscribe", "id": unsubscribe_id, "conversationId": conversation_id }), subscribe]
}
