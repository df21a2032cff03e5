//! A Rust client for the WebSocket gateway that mirrors the Data API (seed 004):
//! `session.conversation(id).subscribe_messages()` gives a `MessageSubscription` whose state moves through
//! pending, active (with the latest snapshot and `loaded_all`), unsubscribed and error; refs send, edit and delete
//! messages and add and remove reactions. `conversation.subscribe()`, `subscribe_participants()`,
//! `subscribe_typing()` and `user.subscribe_online()` are the other live subscriptions (`live.rs`), each a
//! `LiveSubscription` of its snapshot type.
//!
//! One background task owns the socket. It answers requests by id, applies event frames to each subscription's
//! window (`window.rs`), and publishes every new state through a `watch` channel. When the connection drops it
//! reconnects with jittered exponential backoff and resumes every subscription from the last `seq` it saw, so
//! subscriptions stay active through transient disconnects; only an unrecoverable error ends them.

mod connection;
mod live;
mod snapshot;
mod window;

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

pub use live::{
    ConversationListSnapshot, ConversationListSubscription, ConversationSnapshot, ConversationSubscription,
    LiveSnapshot, LiveState, LiveSubscription, ParticipantSnapshot, ParticipantSubscription, ParticipantsSnapshot,
    TypingSnapshot, TypingSubscription, UserOnlineSnapshot, UserOnlineSubscription,
};
pub use snapshot::{MessageSnapshot, ReactionSnapshot, ReferencedMessageSnapshot, UserSnapshot};

/// Requests waiting for the connection task. When full, callers wait: the client's own backpressure.
const COMMAND_QUEUE_CAPACITY: usize = 256;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the request: its error code and reasons.
    #[error("{code}: {}", reasons.join("; "))]
    Refused { code: String, reasons: Vec<String> },
    #[error("the connection is closed")]
    Closed,
}

/// Called with every text frame the server sends (tests validate them against `proto/schema/`).
pub type FrameObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// How to reach the gateway: `ws://host:port`, an app and a user token.
#[derive(Clone)]
pub struct ClientConfig {
    pub url: String,
    pub app_id: String,
    pub token: String,
    pub observer: Option<FrameObserver>,
}

/// A subscription's state, as in seed 004.
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriptionState {
    Pending,
    /// `latest_snapshot` is `None` when the user is not a participant (or the conversation does not exist).
    Active {
        latest_snapshot: Option<Vec<MessageSnapshot>>,
        loaded_all: bool,
    },
    Unsubscribed,
    Error(String),
}

impl SubscriptionState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, SubscriptionState::Unsubscribed | SubscriptionState::Error(_))
    }
}

/// A user subscription's state, as `UserSubscription` has it in the TalkJS Data API.
#[derive(Clone, Debug, PartialEq)]
pub enum UserSubscriptionState {
    Pending,
    /// `latest_snapshot` is `None` while the user does not exist.
    Active {
        latest_snapshot: Option<UserSnapshot>,
    },
    Unsubscribed,
    Error(String),
}

impl UserSubscriptionState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, UserSubscriptionState::Unsubscribed | UserSubscriptionState::Error(_))
    }
}

/// One WebSocket session of one user.
#[derive(Clone)]
pub struct Session {
    pub(crate) commands_tx: mpsc::Sender<connection::Command>,
    user_id: Arc<str>,
}

impl Session {
    /// Connects and authenticates. The user id is read from the token's `sub`.
    pub async fn connect(config: ClientConfig) -> Result<Session, ClientError> {
        let user_id: Arc<str> = snapshot::token_subject(&config.token)
            .ok_or_else(|| ClientError::Connect("the token has no readable sub claim".into()))?
            .into();
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
        connection::spawn(config, user_id.clone(), commands_rx).await?;
        Ok(Session { commands_tx, user_id })
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn conversation(&self, id: &str) -> ConversationRef {
        ConversationRef { session: self.clone(), id: id.to_owned() }
    }

    pub fn user(&self, id: &str) -> UserRef {
        UserRef { session: self.clone(), id: id.to_owned() }
    }

    /// Subscribes to the user's 20 most recently active conversations (`load_more` reaches older ones).
    pub async fn subscribe_conversations(&self) -> Result<ConversationListSubscription, ClientError> {
        LiveSubscription::start(self, live::LiveKind::Conversations, "", None).await
    }

    /// The same list holding only the conversations that match `filter`, a conversation filter as
    /// `GET /users/{id}/conversations` takes it (for example `{"access": ["!=", "None"]}`), applied on every change.
    /// One list per session: the server refuses a second while one is held.
    pub async fn subscribe_conversations_with_filter(
        &self,
        filter: Value,
    ) -> Result<ConversationListSubscription, ClientError> {
        let fields = json!({ "filter": filter });
        LiveSubscription::start(self, live::LiveKind::Conversations, "", Some(fields)).await
    }

    /// Replaces the token without dropping subscriptions; reconnects use it too.
    pub async fn set_token(&self, token: &str) -> Result<(), ClientError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx
            .send(connection::Command::SetToken { token: token.to_owned(), reply_tx })
            .await
            .map_err(|_| ClientError::Closed)?;
        reply_rx.await.map_err(|_| ClientError::Closed)?.map(drop)
    }

    /// Closes the connection; every subscription ends.
    pub async fn close(&self) {
        let _ = self.commands_tx.send(connection::Command::Close).await;
    }

    /// Sends a request frame (its `id` is added) and waits for its reply's result.
    pub async fn request(&self, frame: Value) -> Result<Value, ClientError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx
            .send(connection::Command::Request { frame, reply_tx })
            .await
            .map_err(|_| ClientError::Closed)?;
        reply_rx.await.map_err(|_| ClientError::Closed)?
    }
}

#[derive(Clone)]
pub struct ConversationRef {
    session: Session,
    id: String,
}

impl ConversationRef {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Subscribes to the 30 most recent messages and every change after them.
    pub async fn subscribe_messages(&self) -> Result<MessageSubscription, ClientError> {
        self.subscribe_messages_with_limit(None).await
    }

    pub async fn subscribe_messages_with_limit(&self, limit: Option<u32>) -> Result<MessageSubscription, ClientError> {
        let (state_tx, state_rx) = watch::channel(SubscriptionState::Pending);
        self.session
            .commands_tx
            .send(connection::Command::Subscribe { conversation_id: self.id.clone(), limit, state_tx })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(MessageSubscription { conversation: self.clone(), state_rx })
    }

    /// Sends a text message as the session's user; returns the new message's id.
    pub async fn send(&self, text: &str) -> Result<String, ClientError> {
        self.send_with(json!({ "text": text })).await
    }

    /// Sends with any of `text` or `content`, `custom`, `referencedMessageId`, `idempotencyKey`.
    pub async fn send_with(&self, fields: Value) -> Result<String, ClientError> {
        let mut frame = json!({ "type": "sendMessage", "conversationId": self.id });
        merge(&mut frame, fields);
        let result = self.session.request(frame).await?;
        Ok(result["messageId"].as_str().unwrap_or_default().to_owned())
    }

    pub fn message(&self, id: &str) -> MessageRef {
        MessageRef { conversation: self.clone(), id: id.to_owned() }
    }

    pub async fn mark_as_read(&self) -> Result<(), ClientError> {
        self.session.request(json!({ "type": "markAsRead", "conversationId": self.id })).await.map(drop)
    }

    /// Subscribes to the conversation as the session's user sees it (null while they do not take part).
    pub async fn subscribe(&self) -> Result<ConversationSubscription, ClientError> {
        LiveSubscription::start(&self.session, live::LiveKind::Conversation, &self.id, None).await
    }

    /// Subscribes to the 10 most recently joined participants; `load_more` reaches further back.
    pub async fn subscribe_participants(&self) -> Result<ParticipantSubscription, ClientError> {
        LiveSubscription::start(&self.session, live::LiveKind::Participants, &self.id, None).await
    }

    /// Subscribes to who else types in the conversation.
    pub async fn subscribe_typing(&self) -> Result<TypingSubscription, ClientError> {
        LiveSubscription::start(&self.session, live::LiveKind::Typing, &self.id, None).await
    }

    /// Marks the session's user as typing for 10 seconds; call again to extend.
    pub async fn mark_as_typing(&self) -> Result<(), ClientError> {
        self.session.request(json!({ "type": "markAsTyping", "conversationId": self.id })).await.map(drop)
    }
}

#[derive(Clone)]
pub struct MessageRef {
    conversation: ConversationRef,
    id: String,
}

impl MessageRef {
    /// Edits with `text` or `content`, and `custom` as a patch (null deletes a key).
    pub async fn edit(&self, fields: Value) -> Result<(), ClientError> {
        self.call("editMessage", fields).await
    }

    /// Deletes the message; deleting a missing message succeeds.
    pub async fn delete(&self) -> Result<(), ClientError> {
        self.call("deleteMessage", json!({})).await
    }

    /// Deletes fields such as `custom.key` (or all of `custom`).
    pub async fn delete_fields(&self, fields: &[&str]) -> Result<(), ClientError> {
        self.call("deleteMessageFields", json!({ "fields": fields })).await
    }

    pub fn reaction(&self, emoji: &str) -> ReactionRef {
        ReactionRef { message: self.clone(), emoji: emoji.to_owned() }
    }

    async fn call(&self, kind: &str, fields: Value) -> Result<(), ClientError> {
        let mut frame = json!({ "type": kind, "conversationId": self.conversation.id, "messageId": self.id });
        merge(&mut frame, fields);
        self.conversation.session.request(frame).await.map(drop)
    }
}

#[derive(Clone)]
pub struct ReactionRef {
    message: MessageRef,
    emoji: String,
}

impl ReactionRef {
    pub async fn add(&self) -> Result<(), ClientError> {
        self.message.call("addReaction", json!({ "emoji": self.emoji })).await
    }

    pub async fn remove(&self) -> Result<(), ClientError> {
        self.message.call("removeReaction", json!({ "emoji": self.emoji })).await
    }
}

/// A live, windowed view of a conversation's messages.
pub struct MessageSubscription {
    conversation: ConversationRef,
    state_rx: watch::Receiver<SubscriptionState>,
}

impl MessageSubscription {
    pub fn state(&self) -> SubscriptionState {
        self.state_rx.borrow().clone()
    }

    /// Resolves on the first active state; fails with the terminal state if the subscription ends first.
    pub async fn connected(&self) -> Result<SubscriptionState, SubscriptionState> {
        let state = self.wait_for(|state| !matches!(state, SubscriptionState::Pending)).await;
        match state {
            SubscriptionState::Active { .. } => Ok(state),
            terminal => Err(terminal),
        }
    }

    /// Resolves when the subscription is unsubscribed or in error.
    pub async fn terminated(&self) -> SubscriptionState {
        self.wait_for(SubscriptionState::is_terminal).await
    }

    /// Waits until the state satisfies `predicate` (or is terminal) and returns it.
    pub async fn wait_for(&self, predicate: impl Fn(&SubscriptionState) -> bool) -> SubscriptionState {
        let mut state_rx = self.state_rx.clone();
        let result = state_rx.wait_for(|state| predicate(state) || state.is_terminal()).await;
        match result {
            Ok(state) => state.clone(),
            Err(_) => SubscriptionState::Error("the connection task ended".into()),
        }
    }

    /// Extends the window by `count` older messages (default 30); resolves when they are in the snapshot.
    /// Calls made while one is in flight join it: together they load as many as the largest count.
    pub async fn load_more(&self, count: Option<u32>) -> Result<(), ClientError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let command = connection::Command::LoadMore { conversation_id: self.conversation.id.clone(), count, reply_tx };
        self.conversation.session.commands_tx.send(command).await.map_err(|_| ClientError::Closed)?;
        reply_rx.await.map_err(|_| ClientError::Closed)?
    }

    pub async fn unsubscribe(&self) {
        let (reply_tx, reply_rx) = oneshot::channel();
        let command = connection::Command::Unsubscribe { conversation_id: self.conversation.id.clone(), reply_tx };
        if self.conversation.session.commands_tx.send(command).await.is_ok() {
            let _ = reply_rx.await;
        }
    }
}

#[derive(Clone)]
pub struct UserRef {
    session: Session,
    id: String,
}

impl UserRef {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Subscribes to the user's public fields: `Pending`, then `Active` with each new state. It stays active
    /// through a reconnect (subscribed again, it gets the state as it is then).
    pub async fn subscribe(&self) -> Result<UserSubscription, ClientError> {
        let (state_tx, state_rx) = watch::channel(UserSubscriptionState::Pending);
        let command = connection::Command::SubscribeUser { user_id: self.id.clone(), state_tx };
        self.session.commands_tx.send(command).await.map_err(|_| ClientError::Closed)?;
        Ok(UserSubscription { user: self.clone(), state_rx })
    }

    /// Subscribes to whether the user is connected (null while they do not exist).
    pub async fn subscribe_online(&self) -> Result<UserOnlineSubscription, ClientError> {
        LiveSubscription::start(&self.session, live::LiveKind::Online, &self.id, None).await
    }
}

/// A live view of one user.
pub struct UserSubscription {
    user: UserRef,
    state_rx: watch::Receiver<UserSubscriptionState>,
}

impl UserSubscription {
    pub fn state(&self) -> UserSubscriptionState {
        self.state_rx.borrow().clone()
    }

    /// Waits until the state satisfies `predicate` (or is terminal) and returns it.
    pub async fn wait_for(&self, predicate: impl Fn(&UserSubscriptionState) -> bool) -> UserSubscriptionState {
        let mut state_rx = self.state_rx.clone();
        let result = state_rx.wait_for(|state| predicate(state) || state.is_terminal()).await;
        match result {
            Ok(state) => state.clone(),
            Err(_) => UserSubscriptionState::Error("the connection task ended".into()),
        }
    }

    /// Resolves on the first active state; fails with the terminal state if the subscription ends first.
    pub async fn connected(&self) -> Result<UserSubscriptionState, UserSubscriptionState> {
        match self.wait_for(|state| !matches!(state, UserSubscriptionState::Pending)).await {
            state @ UserSubscriptionState::Active { .. } => Ok(state),
            terminal => Err(terminal),
        }
    }

    pub async fn unsubscribe(&self) {
        let (reply_tx, reply_rx) = oneshot::channel();
        let command = connection::Command::UnsubscribeUser { user_id: self.user.id.clone(), reply_tx };
        if self.user.session.commands_tx.send(command).await.is_ok() {
            let _ = reply_rx.await;
        }
    }
}

fn merge(frame: &mut Value, fields: Value) {
    if let (Some(frame), Value::Object(fields)) = (frame.as_object_mut(), fields) {
        frame.extend(fields);
    }
}
