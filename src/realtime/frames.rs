//! The frames of the WebSocket protocol (`proto/PROTOCOL.md`): client frames parsed into requests, and server
//! frames encoded around the JSON of domain values (`wire::snapshot`). The only place in `realtime` that knows
//! JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::{
    domain::{
        event::{Event, EventKind, UserEvent, UserEventKind},
        ids::{AppId, ConversationId, Seq, UserId},
        user::User,
        Custom, CustomPatch,
    },
    hub::{EncodedEvent, Membership, Stream},
    store::{ConversationState, MessageWindow, ParticipantEntry},
    wire::{
        snapshot::{
            ConversationSnapshotJson, MessageSnapshotJson, ParticipantSnapshotJson, SnapshotContext, UserSnapshotJson,
        },
        Links, NotifyJson,
    },
};

use super::state::{State, Topic, Typing};

/// A client-chosen request id, echoed in the reply: 1 to 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Every frame a client may send.
#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum ClientFrame {
    SubscribeMessages {
        id: String,
        conversation_id: String,
        limit: Option<u32>,
        resume: Option<ResumeFrame>,
    },
    LoadMore {
        id: String,
        conversation_id: String,
        count: Option<u32>,
    },
    Unsubscribe {
        id: String,
        conversation_id: String,
    },
    UpdateToken {
        id: String,
        token: String,
    },
    SendMessage {
        id: String,
        conversation_id: String,
        text: Option<String>,
        content: Option<Value>,
        #[serde(default)]
        custom: Custom,
        referenced_message_id: Option<String>,
        idempotency_key: Option<String>,
    },
    EditMessage {
        id: String,
        conversation_id: String,
        message_id: String,
        text: Option<String>,
        content: Option<Value>,
        custom: Option<CustomPatch>,
    },
    DeleteMessage {
        id: String,
        conversation_id: String,
        message_id: String,
    },
    DeleteMessageFields {
        id: String,
        conversation_id: String,
        message_id: String,
        fields: Vec<String>,
    },
    AddReaction {
        id: String,
        conversation_id: String,
        message_id: String,
        emoji: String,
    },
    RemoveReaction {
        id: String,
        conversation_id: String,
        message_id: String,
        emoji: String,
    },
    MarkAsRead {
        id: String,
        conversation_id: String,
    },
    SubscribeUser {
        id: String,
        user_id: String,
    },
    UnsubscribeUser {
        id: String,
        user_id: String,
    },
    SubscribeConversation {
        id: String,
        conversation_id: String,
    },
    UnsubscribeConversation {
        id: String,
        conversation_id: String,
    },
    SubscribeParticipants {
        id: String,
        conversation_id: String,
        limit: Option<u32>,
    },
    LoadMoreParticipants {
        id: String,
        conversation_id: String,
        count: Option<u32>,
    },
    UnsubscribeParticipants {
        id: String,
        conversation_id: String,
    },
    SubscribeTyping {
        id: String,
        conversation_id: String,
    },
    UnsubscribeTyping {
        id: String,
        conversation_id: String,
    },
    MarkAsTyping {
        id: String,
        conversation_id: String,
    },
    SubscribeOnline {
        id: String,
        user_id: String,
    },
    UnsubscribeOnline {
        id: String,
        user_id: String,
    },
    SubscribeConversations {
        id: String,
        limit: Option<u32>,
        /// The filter grammar of `GET /users/{id}/conversations`.
        filter: Option<Value>,
    },
    LoadMoreConversations {
        id: String,
        count: Option<u32>,
    },
    UnsubscribeConversations {
        id: String,
    },
}

/// Where a reconnecting client's window stood (`subscribeMessages.resume`).
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeFrame {
    pub from_seq: i64,
    pub oldest_seq: Option<i64>,
    #[serde(default)]
    pub loaded_all: bool,
}

/// Why a text frame could not be read as a request, with the request id when one could be found.
#[derive(Debug)]
pub struct FrameError {
    pub id: Option<RequestId>,
    pub reason: String,
}

/// Parses a text frame. A frame that is JSON with a string `id` but otherwise wrong still yields that id, so the
/// error reply can name the request.
pub fn parse_client_frame(text: &str) -> Result<(RequestId, ClientFrame), FrameError> {
    let bad_id = || FrameError {
        id: None,
        reason: format!("\"id\" must be a string of 1 to {MAX_REQUEST_ID_CHARS} characters"),
    };
    let valid = |id: &str| !id.is_empty() && id.chars().count() <= MAX_REQUEST_ID_CHARS;
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) if valid(frame.id()) => Ok((RequestId(frame.id().to_owned()), frame)),
        Ok(_) => Err(bad_id()),
        // Only a refused frame is read a second time, to find the id its error reply should carry.
        Err(error) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|error| FrameError { id: None, reason: format!("the frame is not valid JSON: {error}") })?;
            match value.get("id").and_then(Value::as_str) {
                Some(id) if valid(id) => {
                    Err(FrameError { id: Some(RequestId(id.to_owned())), reason: error.to_string() })
                }
                _ => Err(bad_id()),
            }
        }
    }
}

impl ClientFrame {
    /// The client-chosen request id every frame carries.
    pub fn id(&self) -> &str {
        match self {
            ClientFrame::SubscribeMessages { id, .. }
            | ClientFrame::LoadMore { id, .. }
            | ClientFrame::Unsubscribe { id, .. }
            | ClientFrame::UpdateToken { id, .. }
            | ClientFrame::SendMessage { id, .. }
            | ClientFrame::EditMessage { id, .. }
            | ClientFrame::DeleteMessage { id, .. }
            | ClientFrame::DeleteMessageFields { id, .. }
            | ClientFrame::AddReaction { id, .. }
            | ClientFrame::RemoveReaction { id, .. }
            | ClientFrame::MarkAsRead { id, .. }
            | ClientFrame::SubscribeUser { id, .. }
            | ClientFrame::UnsubscribeUser { id, .. }
            | ClientFrame::SubscribeConversation { id, .. }
            | ClientFrame::UnsubscribeConversation { id, .. }
            | ClientFrame::SubscribeParticipants { id, .. }
            | ClientFrame::LoadMoreParticipants { id, .. }
            | ClientFrame::UnsubscribeParticipants { id, .. }
            | ClientFrame::SubscribeTyping { id, .. }
            | ClientFrame::UnsubscribeTyping { id, .. }
            | ClientFrame::MarkAsTyping { id, .. }
            | ClientFrame::SubscribeOnline { id, .. }
            | ClientFrame::UnsubscribeOnline { id, .. }
            | ClientFrame::SubscribeConversations { id, .. }
            | ClientFrame::LoadMoreConversations { id, .. }
            | ClientFrame::UnsubscribeConversations { id, .. } => id,
        }
    }
}
// ---- server frames ----

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
#[allow(clippy::large_enum_variant, reason = "built on the stack and serialised at once, never stored")]
enum ServerFrame<'a> {
    Ok {
        id: &'a str,
        result: Value,
    },
    Error {
        id: Option<&'a str>,
        error_code: &'a str,
        reasons: &'a [String],
    },
    Snapshot {
        conversation_id: &'a str,
        seq: i64,
        messages: Option<Vec<MessageSnapshotJson<'a>>>,
        loaded_all: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        resumed: Option<bool>,
    },
    Resumed {
        conversation_id: &'a str,
        from_seq: i64,
        seq: i64,
    },
    Page {
        conversation_id: &'a str,
        seq: i64,
        messages: Vec<MessageSnapshotJson<'a>>,
        loaded_all: bool,
    },
    SubscriptionError {
        /// Which kind of subscription ended, for those other than a message window.
        #[serde(skip_serializing_if = "Option::is_none")]
        subscription: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
        error_code: &'a str,
        reasons: &'a [String],
    },
    /// A conversation subscription's whole state.
    Conversation {
        conversation_id: &'a str,
        conversation: Option<ConversationSnapshotJson<'a>>,
    },
    /// A participants subscription's whole window.
    Participants {
        conversation_id: &'a str,
        participants: Option<Vec<ParticipantSnapshotJson<'a>>>,
        loaded_all: bool,
    },
    /// A conversation list's whole window.
    Conversations {
        conversations: Vec<ConversationSnapshotJson<'a>>,
        loaded_all: bool,
    },
    /// An online subscription's whole state.
    Online {
        user_id: &'a str,
        online: Option<OnlineJson<'a>>,
    },
    Event {
        conversation_id: &'a str,
        seq: i64,
        event: EventJson<'a>,
    },
    /// A user subscription's whole state: sent on subscribe and on every change.
    User {
        user_id: &'a str,
        seq: i64,
        user: Option<UserSnapshotJson<'a>>,
    },
}

fn encode(frame: &ServerFrame<'_>) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(frame).expect("server frames always encode"))
}

pub fn ok_frame(id: &RequestId, result: Value) -> Utf8Bytes {
    encode(&ServerFrame::Ok { id: &id.0, result })
}

pub fn error_frame(id: Option<&RequestId>, error_code: &str, reasons: &[String]) -> Utf8Bytes {
    encode(&ServerFrame::Error { id: id.map(|id| id.0.as_str()), error_code, reasons })
}

pub fn subscription_error_frame(conversation: &ConversationId, error_code: &str, reasons: &[String]) -> Utf8Bytes {
    encode(&ServerFrame::SubscriptionError {
        subscription: None,
        conversation_id: Some(conversation.as_str()),
        user_id: None,
        error_code,
        reasons,
    })
}

/// A state or typing subscription ended in the error state.
pub fn state_error_frame(topic: &Topic, error_code: &str, reasons: &[String]) -> Utf8Bytes {
    let (subscription, conversation_id, user_id) = match topic {
        Topic::Conversation(conversation) => ("conversation", Some(conversation.as_str()), None),
        Topic::Participants(conversation) => ("participants", Some(conversation.as_str()), None),
        Topic::Online(user) => ("online", None, Some(user.as_str())),
        Topic::Conversations => ("conversations", None, None),
    };
    encode(&ServerFrame::SubscriptionError {
        subscription: Some(subscription),
        conversation_id,
        user_id,
        error_code,
        reasons,
    })
}

pub fn typing_error_frame(conversation: &ConversationId, error_code: &str, reasons: &[String]) -> Utf8Bytes {
    encode(&ServerFrame::SubscriptionError {
        subscription: Some("typing"),
        conversation_id: Some(conversation.as_str()),
        user_id: None,
        error_code,
        reasons,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OnlineJson<'a> {
    user: UserSnapshotJson<'a>,
    is_connected: bool,
}

/// A state subscription's whole state, as its user sees it.
pub fn state_frame<'a>(topic: &'a Topic, state: &'a State, context: &SnapshotContext<'_>) -> Utf8Bytes {
    match (topic, state) {
        (Topic::Conversation(conversation_id), State::Conversation(state)) => encode(&ServerFrame::Conversation {
            conversation_id: conversation_id.as_str(),
            conversation: state.as_deref().map(|state| conversation_json(state, context)),
        }),
        (Topic::Conversations, State::Conversations(page)) => encode(&ServerFrame::Conversations {
            conversations: page.conversations.iter().map(|state| conversation_json(state, context)).collect(),
            loaded_all: page.loaded_all,
        }),
        (Topic::Participants(conversation_id), State::Participants(page)) => encode(&ServerFrame::Participants {
            conversation_id: conversation_id.as_str(),
            participants: page.as_ref().map(|page| {
                let entry = |entry: &'a ParticipantEntry| {
                    ParticipantSnapshotJson::new(&entry.user, entry.access, entry.notify, entry.joined_at)
                };
                page.participants.iter().map(entry).collect()
            }),
            loaded_all: page.as_ref().is_none_or(|page| page.loaded_all),
        }),
        (Topic::Online(user_id), State::Online(online)) => encode(&ServerFrame::Online {
            user_id: user_id.as_str(),
            online: online.as_deref().map(|online| OnlineJson {
                user: UserSnapshotJson::new(&online.user),
                is_connected: online.is_connected,
            }),
        }),
        _ => unreachable!("a state is read for its own topic"),
    }
}

fn conversation_json<'a>(state: &'a ConversationState, context: &SnapshotContext<'_>) -> ConversationSnapshotJson<'a> {
    let reads = (state.read_until, state.everyone_read_until);
    ConversationSnapshotJson::new(&state.conversation, &state.participant, state.last_message.as_ref(), reads, context)
}

/// A typing snapshot. The typists' UserSnapshots are already JSON (encoded once by the node that took the
/// `markAsTyping`), so the frame is put together around them.
pub fn typing_frame(conversation: &ConversationId, typing: Option<&Typing>) -> Utf8Bytes {
    let id = serde_json::to_string(conversation.as_str()).expect("a string encodes");
    let typing = match typing {
        None => "null".to_owned(),
        Some(Typing::Many) => r#"{"many":true}"#.to_owned(),
        Some(Typing::Few(users)) => {
            let users: Vec<&str> = users.iter().map(Utf8Bytes::as_str).collect();
            format!(r#"{{"many":false,"users":[{}]}}"#, users.join(","))
        }
    };
    Utf8Bytes::from(format!(r#"{{"type":"typing","conversationId":{id},"typing":{typing}}}"#))
}

/// A typing signal, encoded once for every subscriber of the conversation's typing: the frame is the typist's
/// UserSnapshot (empty when they stopped).
pub fn typing_signal(app: &AppId, conversation: &ConversationId, user: &UserId, typist: Option<&User>) -> EncodedEvent {
    EncodedEvent {
        app_id: app.clone(),
        stream: Stream::Typing {
            conversation_id: conversation.clone(),
            user_id: user.clone(),
            typing: typist.is_some(),
        },
        seq: Seq(0),
        membership: None,
        frame: typist.map_or_else(Utf8Bytes::default, |user| {
            Utf8Bytes::from(serde_json::to_string(&UserSnapshotJson::new(user)).expect("a user encodes"))
        }),
    }
}

/// A whole window (subscribe, join, leave): `messages` is null when the user may not see the conversation.
pub fn snapshot_frame(
    conversation: &ConversationId,
    window: &MessageWindow,
    context: &SnapshotContext<'_>,
    resumed: Option<bool>,
) -> Utf8Bytes {
    let messages = window
        .participant
        .then(|| window.messages.iter().map(|view| MessageSnapshotJson::new(view, context, true)).collect());
    encode(&ServerFrame::Snapshot {
        conversation_id: conversation.as_str(),
        seq: window.seq.0,
        messages,
        loaded_all: window.loaded_all,
        resumed,
    })
}

/// The answer to a resumed subscription: the client's window stands, and the events after `from_seq` follow.
pub fn resumed_frame(conversation: &ConversationId, from_seq: Seq, seq: Seq) -> Utf8Bytes {
    encode(&ServerFrame::Resumed { conversation_id: conversation.as_str(), from_seq: from_seq.0, seq: seq.0 })
}

/// Older messages for the end of the window (loadMore).
pub fn page_frame(conversation: &ConversationId, window: &MessageWindow, context: &SnapshotContext<'_>) -> Utf8Bytes {
    encode(&ServerFrame::Page {
        conversation_id: conversation.as_str(),
        seq: window.seq.0,
        messages: window.messages.iter().map(|view| MessageSnapshotJson::new(view, context, true)).collect(),
        loaded_all: window.loaded_all,
    })
}

/// A user's state as of their stream's `seq` (`None`: the user does not exist).
pub fn user_frame(user_id: &UserId, seq: Seq, user: Option<&User>) -> Utf8Bytes {
    encode(&ServerFrame::User { user_id: user_id.as_str(), seq: seq.0, user: user.map(UserSnapshotJson::new) })
}

/// Encodes a user's change once, for every subscriber of that user; `None` for events of the user's stream that
/// change nothing a subscriber sees (reads).
pub fn user_event_frame(event: &UserEvent, app: &AppId) -> Option<EncodedEvent> {
    let (UserEventKind::Created { user } | UserEventKind::Updated { user }) = &event.kind else { return None };
    Some(EncodedEvent {
        app_id: app.clone(),
        stream: Stream::User(event.user_id.clone()),
        seq: event.seq,
        membership: None,
        frame: user_frame(&event.user_id, event.seq, Some(user)),
    })
}

/// Encodes an event once, for every subscriber of its conversation.
pub fn event_frame(event: &Event, app: &AppId, links: &Links) -> EncodedEvent {
    let context = SnapshotContext { app, links, me: None };
    let (event_json, membership) = match &event.kind {
        EventKind::ConversationUpdated => (EventJson::ConversationUpdated, None),
        EventKind::ConversationDeleted { .. } => {
            (EventJson::ConversationDeleted, Some(Membership::ConversationDeleted))
        }
        EventKind::ParticipantJoined { user_id, access, notify } => (
            EventJson::ParticipantJoined {
                user_id: user_id.as_str(),
                access: access.as_str(),
                notify: (*notify).into(),
            },
            Some(Membership::Joined(user_id.clone())),
        ),
        EventKind::ParticipantUpdated { user_id, access, notify } => (
            EventJson::ParticipantUpdated {
                user_id: user_id.as_str(),
                access: access.as_str(),
                notify: (*notify).into(),
            },
            None,
        ),
        EventKind::ParticipantLeft { user_id } => {
            (EventJson::ParticipantLeft { user_id: user_id.as_str() }, Some(Membership::Left(user_id.clone())))
        }
        // A new message has no reactions, and an edit does not change them, so neither frame depends on who
        // receives it.
        EventKind::MessageCreated { message } => {
            (EventJson::MessageCreated { message: MessageSnapshotJson::new(message, &context, true) }, None)
        }
        EventKind::MessageEdited { message } => {
            (EventJson::MessageEdited { message: MessageSnapshotJson::new(message, &context, false) }, None)
        }
        EventKind::MessageDeleted { message_id, .. } => {
            (EventJson::MessageDeleted { message_id: message_id.as_str() }, None)
        }
        EventKind::AllMessagesDeleted => (EventJson::AllMessagesDeleted, None),
        EventKind::MessageImported { message_id } => {
            (EventJson::MessageImported { message_id: message_id.as_str() }, None)
        }
        EventKind::ReactionAdded { message_id, emoji, user_id } => (
            EventJson::ReactionAdded {
                message_id: message_id.as_str(),
                emoji: emoji.as_str(),
                user_id: user_id.as_str(),
            },
            None,
        ),
        EventKind::ReactionRemoved { message_id, emoji, user_id } => (
            EventJson::ReactionRemoved {
                message_id: message_id.as_str(),
                emoji: emoji.as_str(),
                user_id: user_id.as_str(),
            },
            None,
        ),
    };
    let frame = encode(&ServerFrame::Event {
        conversation_id: event.conversation_id.as_str(),
        seq: event.seq.0,
        event: event_json,
    });
    EncodedEvent {
        app_id: app.clone(),
        stream: Stream::Conversation(event.conversation_id.clone()),
        seq: event.seq,
        membership,
        frame,
    }
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum EventJson<'a> {
    ConversationUpdated,
    ConversationDeleted,
    ParticipantJoined { user_id: &'a str, access: &'static str, notify: NotifyJson },
    ParticipantUpdated { user_id: &'a str, access: &'static str, notify: NotifyJson },
    ParticipantLeft { user_id: &'a str },
    MessageCreated { message: MessageSnapshotJson<'a> },
    MessageEdited { message: MessageSnapshotJson<'a> },
    MessageDeleted { message_id: &'a str },
    AllMessagesDeleted,
    MessageImported { message_id: &'a str },
    ReactionAdded { message_id: &'a str, emoji: &'a str, user_id: &'a str },
    ReactionRemoved { message_id: &'a str, emoji: &'a str, user_id: &'a str },
}
