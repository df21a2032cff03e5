//! The live subscriptions whose every frame is a whole state (the Data API's `ConversationRef.subscribe`,
//! `subscribeParticipants`, `subscribeTyping` and `UserRef.subscribeOnline`): the client keeps the latest frame
//! and reads it as the kind's snapshot type. Nothing is replayed: after a reconnect the connection subscribes
//! again, and the first frame is the state as it is then.

use std::marker::PhantomData;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::{connection::Command, snapshot::UserSnapshot, ClientError, MessageSnapshot, Session};

/// What a live subscription is of: its kind and the conversation or user it is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LiveKey {
    pub kind: LiveKind,
    pub id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LiveKind {
    Conversation,
    Participants,
    Typing,
    Online,
    /// The session user's conversation list (its key's id is empty).
    Conversations,
}

impl LiveKind {
    /// The type of the server's state frames, which is also the `subscription` of its `subscriptionError`.
    pub fn frame_type(self) -> &'static str {
        match self {
            LiveKind::Conversation => "conversation",
            LiveKind::Participants => "participants",
            LiveKind::Typing => "typing",
            LiveKind::Online => "online",
            LiveKind::Conversations => "conversations",
        }
    }

    pub fn from_frame_type(kind: &str) -> Option<Self> {
        [LiveKind::Conversation, LiveKind::Participants, LiveKind::Typing, LiveKind::Online, LiveKind::Conversations]
            .into_iter()
            .find(|live| live.frame_type() == kind)
    }

    /// The field that names what the subscription is about (none for the conversation list).
    pub fn id_field(self) -> Option<&'static str> {
        match self {
            LiveKind::Online => Some("userId"),
            LiveKind::Conversations => None,
            _ => Some("conversationId"),
        }
    }

    /// A request of this kind about `id`.
    pub fn frame(self, kind: &str, request_id: &str, id: &str) -> Value {
        let mut frame = serde_json::json!({ "type": kind, "id": request_id });
        if let Some(field) = self.id_field() {
            frame[field] = id.into();
        }
        frame
    }

    fn suffix(self) -> &'static str {
        match self {
            LiveKind::Conversation => "Conversation",
            LiveKind::Participants => "Participants",
            LiveKind::Typing => "Typing",
            LiveKind::Online => "Online",
            LiveKind::Conversations => "Conversations",
        }
    }

    pub fn subscribe_type(self) -> String {
        format!("subscribe{}", self.suffix())
    }

    pub fn unsubscribe_type(self) -> String {
        format!("unsubscribe{}", self.suffix())
    }
}

/// A live subscription's state, as the Data API has it; `Active(None)` is its null snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveState<T> {
    Pending,
    Active(Option<T>),
    Unsubscribed,
    Error(String),
}

impl<T> LiveState<T> {
    pub fn is_terminal(&self) -> bool {
        matches!(self, LiveState::Unsubscribed | LiveState::Error(_))
    }
}

/// A snapshot type read out of its state frame.
pub trait LiveSnapshot: Sized {
    /// `None` for the null snapshot.
    fn from_frame(frame: &Value) -> Option<Self>;
}

/// The Data API's ConversationSnapshot: the conversation as the session's user sees it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSnapshot {
    pub id: String,
    pub subject: Option<String>,
    pub photo_url: Option<String>,
    pub welcome_messages: Vec<String>,
    pub custom: std::collections::BTreeMap<String, String>,
    pub created_at: i64,
    pub joined_at: i64,
    pub last_message: Option<MessageSnapshot>,
    pub unread_message_count: u64,
    pub read_until: i64,
    pub everyone_read_until: i64,
    pub is_unread: bool,
    pub access: String,
    /// `true`, `false` or `"MentionsOnly"`.
    pub notify: Value,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantSnapshot {
    pub user: UserSnapshot,
    pub access: String,
    pub notify: Value,
    pub joined_at: i64,
}

/// A participants window: the most recently joined first.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticipantsSnapshot {
    pub participants: Vec<ParticipantSnapshot>,
    pub loaded_all: bool,
}

/// The conversation list: most recent activity first, `loaded_all` once no older one is left.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationListSnapshot {
    pub conversations: Vec<ConversationSnapshot>,
    pub loaded_all: bool,
}

/// Who else types: at most five, longest typing first, or many.
#[derive(Clone, Debug, PartialEq)]
pub enum TypingSnapshot {
    Few(Vec<UserSnapshot>),
    Many,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOnlineSnapshot {
    pub user: UserSnapshot,
    pub is_connected: bool,
}

impl LiveSnapshot for ConversationSnapshot {
    fn from_frame(frame: &Value) -> Option<Self> {
        serde_json::from_value(frame["conversation"].clone()).ok()
    }
}

impl LiveSnapshot for ParticipantsSnapshot {
    fn from_frame(frame: &Value) -> Option<Self> {
        let participants = serde_json::from_value(frame["participants"].clone()).ok()?;
        Some(ParticipantsSnapshot { participants, loaded_all: frame["loadedAll"].as_bool().unwrap_or(false) })
    }
}

impl LiveSnapshot for ConversationListSnapshot {
    fn from_frame(frame: &Value) -> Option<Self> {
        let conversations = serde_json::from_value(frame["conversations"].clone()).ok()?;
        Some(ConversationListSnapshot { conversations, loaded_all: frame["loadedAll"].as_bool().unwrap_or(false) })
    }
}

impl LiveSnapshot for TypingSnapshot {
    fn from_frame(frame: &Value) -> Option<Self> {
        let typing = &frame["typing"];
        match typing["many"].as_bool()? {
            true => Some(TypingSnapshot::Many),
            false => serde_json::from_value(typing["users"].clone()).ok().map(TypingSnapshot::Few),
        }
    }
}

impl LiveSnapshot for UserOnlineSnapshot {
    fn from_frame(frame: &Value) -> Option<Self> {
        serde_json::from_value(frame["online"].clone()).ok()
    }
}

/// A live subscription: the latest state frame, read as `T`.
pub struct LiveSubscription<T> {
    pub(crate) session: Session,
    pub(crate) key: LiveKey,
    pub(crate) state_rx: watch::Receiver<LiveState<Value>>,
    pub(crate) _snapshot: PhantomData<fn() -> T>,
}

pub type ConversationSubscription = LiveSubscription<ConversationSnapshot>;
pub type ParticipantSubscription = LiveSubscription<ParticipantsSnapshot>;
pub type TypingSubscription = LiveSubscription<TypingSnapshot>;
pub type UserOnlineSubscription = LiveSubscription<UserOnlineSnapshot>;
pub type ConversationListSubscription = LiveSubscription<ConversationListSnapshot>;

fn read<T: LiveSnapshot>(state: &LiveState<Value>) -> LiveState<T> {
    match state {
        LiveState::Pending => LiveState::Pending,
        LiveState::Active(frame) => LiveState::Active(frame.as_ref().and_then(T::from_frame)),
        LiveState::Unsubscribed => LiveState::Unsubscribed,
        LiveState::Error(reason) => LiveState::Error(reason.clone()),
    }
}

impl<T: LiveSnapshot> LiveSubscription<T> {
    pub(crate) async fn start(
        session: &Session,
        kind: LiveKind,
        id: &str,
        fields: Option<Value>,
    ) -> Result<Self, ClientError> {
        let (state_tx, state_rx) = watch::channel(LiveState::Pending);
        let key = LiveKey { kind, id: id.to_owned() };
        let command = Command::SubscribeLive { key: key.clone(), fields, state_tx };
        session.commands_tx.send(command).await.map_err(|_| ClientError::Closed)?;
        Ok(Self { session: session.clone(), key, state_rx, _snapshot: PhantomData })
    }

    pub fn state(&self) -> LiveState<T> {
        read(&self.state_rx.borrow())
    }

    /// Waits until the state satisfies `predicate` (or is terminal) and returns it.
    pub async fn wait_for(&self, predicate: impl Fn(&LiveState<T>) -> bool) -> LiveState<T> {
        let mut state_rx = self.state_rx.clone();
        let result = state_rx
            .wait_for(|state| {
                let state = read(state);
                predicate(&state) || state.is_terminal()
            })
            .await;
        match result {
            Ok(state) => read(&state),
            Err(_) => LiveState::Error("the connection task ended".into()),
        }
    }

    /// Resolves on the first active state; fails with the terminal state if the subscription ends first.
    pub async fn connected(&self) -> Result<LiveState<T>, LiveState<T>> {
        match self.wait_for(|state| !matches!(state, LiveState::Pending)).await {
            state @ LiveState::Active(_) => Ok(state),
            terminal => Err(terminal),
        }
    }

    pub async fn unsubscribe(&self) {
        let (reply_tx, reply_rx) = oneshot::channel();
        let command = Command::UnsubscribeLive { key: self.key.clone(), reply_tx };
        if self.session.commands_tx.send(command).await.is_ok() {
            let _ = reply_rx.await;
        }
    }
}

impl ParticipantSubscription {
    /// Extends the window by `count` earlier joiners (default 10, at most 50); resolves once they are in the
    /// snapshot. The server coalesces calls made meanwhile.
    pub async fn load_more(&self, count: Option<u32>) -> Result<(), ClientError> {
        let mut frame = serde_json::json!({ "type": "loadMoreParticipants", "conversationId": self.key.id });
        if let Some(count) = count {
            frame["count"] = count.into();
        }
        self.session.request(frame).await.map(drop)
    }
}

impl ConversationListSubscription {
    /// Extends the list by `count` conversations with older activity (default 20, at most 30).
    pub async fn load_more(&self, count: Option<u32>) -> Result<(), ClientError> {
        let mut frame = serde_json::json!({ "type": "loadMoreConversations" });
        if let Some(count) = count {
            frame["count"] = count.into();
        }
        self.session.request(frame).await.map(drop)
    }
}
