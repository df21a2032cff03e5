//! The JSON shapes of the WebSocket protocol (`proto/PROTOCOL.md`): client frames parsed into requests, and server
//! frames encoded from domain values. The only place in `realtime` that knows JSON.

use std::collections::BTreeMap;

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    domain::{
        content::{self, ContentBlock, FileBlock, MarkupKind, TextNode},
        event::{Event, EventKind},
        ids::{AppId, ConversationId, MessageId, Seq, UserId},
        message::{Location, Message, MessageBody, MessageView},
        reaction::ReactionSummary,
        user::User,
        Custom, CustomPatch, ValidationError,
    },
    hub::{EncodedEvent, Membership},
    store::MessageWindow,
    wire::{Links as UrlLinks, NotifyJson},
};

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
        content: Option<Vec<Value>>,
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
        content: Option<Vec<Value>>,
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
            | ClientFrame::MarkAsRead { id, .. } => id,
        }
    }
}

/// Parses the content blocks a client sends (a single block today). File blocks carry a `fileToken` from
/// `POST /files`.
pub fn parse_send_content(blocks: &[Value]) -> Result<SendContent, ValidationError> {
    let [block] = blocks else {
        return Err(ValidationError::new("content", "must hold exactly one block"));
    };
    let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" => {
            let children = block
                .get("children")
                .and_then(Value::as_array)
                .ok_or_else(|| ValidationError::new("content[0].children", "must be an array of text nodes"))?;
            let nodes = children
                .iter()
                .enumerate()
                .map(|(index, node)| parse_node(node, &format!("content[0].children[{index}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SendContent::Text(nodes))
        }
        "file" => {
            let token = block
                .get("fileToken")
                .and_then(Value::as_str)
                .ok_or_else(|| ValidationError::new("content[0].fileToken", "is required for a file block"))?;
            Ok(SendContent::File(token.to_owned()))
        }
        "location" => {
            let number = |field: &str| {
                block
                    .get(field)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| ValidationError::new(format!("content[0].{field}"), "must be a number"))
            };
            Ok(SendContent::Location(Location::parse(number("latitude")?, number("longitude")?)?))
        }
        other => Err(ValidationError::new("content[0].type", format!("unknown block type {other:?}"))),
    }
}

/// What a client's content blocks amount to.
#[derive(Debug, PartialEq)]
pub enum SendContent {
    Text(Vec<TextNode>),
    File(String),
    Location(Location),
}

impl SendContent {
    /// The stored body: text nodes are written back as markup, parsed without links on the way out.
    pub fn into_body(self) -> Result<MessageBody, ValidationError> {
        match self {
            SendContent::Text(nodes) => {
                content::check_user_nodes(&nodes)?;
                let text = content::to_markup(&nodes);
                if text.is_empty() {
                    return Err(ValidationError::new("content", "a text block must not be empty"));
                }
                Ok(MessageBody::Text(text))
            }
            SendContent::File(token) => Ok(MessageBody::Attachment { token }),
            SendContent::Location(location) => Ok(MessageBody::Location(location)),
        }
    }
}

fn parse_node(node: &Value, at: &str) -> Result<TextNode, ValidationError> {
    if let Some(text) = node.as_str() {
        return Ok(TextNode::Plain(text.to_owned()));
    }
    let kind = node
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ValidationError::new(at, "a text node is a string or an object with a \"type\""))?;
    let string = |field: &str| {
        node.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ValidationError::new(format!("{at}.{field}"), "must be a string"))
    };
    let children = || -> Result<Vec<TextNode>, ValidationError> {
        let children = node
            .get("children")
            .and_then(Value::as_array)
            .ok_or_else(|| ValidationError::new(format!("{at}.children"), "must be an array"))?;
        children.iter().enumerate().map(|(i, child)| parse_node(child, &format!("{at}.children[{i}]"))).collect()
    };
    let params = || -> BTreeMap<String, String> {
        node.get("params")
            .and_then(Value::as_object)
            .map(|params| params.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
            .unwrap_or_default()
    };
    Ok(match kind {
        "bold" => TextNode::Markup { kind: MarkupKind::Bold, children: children()? },
        "italic" => TextNode::Markup { kind: MarkupKind::Italic, children: children()? },
        "strikethrough" => TextNode::Markup { kind: MarkupKind::Strikethrough, children: children()? },
        "bulletList" => TextNode::BulletList { children: children()? },
        "bulletPoint" => TextNode::BulletPoint { children: children()? },
        "codeSpan" => TextNode::CodeSpan { text: string("text")? },
        "link" => TextNode::Link { url: string("url")?, children: children()? },
        "actionLink" => TextNode::ActionLink { action: string("action")?, params: params(), children: children()? },
        "actionButton" => TextNode::ActionButton { action: string("action")?, params: params(), children: children()? },
        "autoLink" => TextNode::AutoLink { url: string("url")?, text: string("text")? },
        "customEmoji" => TextNode::CustomEmoji { text: string("text")? },
        "mention" => TextNode::Mention { id: string("id")?, text: string("text")? },
        other => return Err(ValidationError::new(format!("{at}.type"), format!("unknown text node type {other:?}"))),
    })
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
        conversation_id: &'a str,
        error_code: &'a str,
        reasons: &'a [String],
    },
    Event {
        conversation_id: &'a str,
        seq: i64,
        event: EventJson<'a>,
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
    encode(&ServerFrame::SubscriptionError { conversation_id: conversation.as_str(), error_code, reasons })
}

/// Context for encoding messages: where files are served, and who `currentUserReacted` is about.
pub struct SnapshotContext<'a> {
    pub app: &'a AppId,
    pub links: &'a UrlLinks,
    pub me: Option<&'a UserId>,
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

/// Encodes an event once, for every subscriber of its conversation.
pub fn event_frame(event: &Event, app: &AppId, links: &UrlLinks) -> EncodedEvent {
    let context = SnapshotContext { app, links, me: None };
    let (event_json, membership) = match &event.kind {
        EventKind::ConversationUpdated => (EventJson::ConversationUpdated, None),
        EventKind::ConversationDeleted => (EventJson::ConversationDeleted, Some(Membership::ConversationDeleted)),
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
        EventKind::MessageDeleted { message_id } => {
            (EventJson::MessageDeleted { message_id: message_id.as_str() }, None)
        }
        EventKind::AllMessagesDeleted => (EventJson::AllMessagesDeleted, None),
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
        conversation_id: event.conversation_id.clone(),
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
    ReactionAdded { message_id: &'a str, emoji: &'a str, user_id: &'a str },
    ReactionRemoved { message_id: &'a str, emoji: &'a str, user_id: &'a str },
}

/// The public fields of a user (no email, phone or push tokens).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserSnapshotJson<'a> {
    id: &'a str,
    name: &'a str,
    custom: &'a Custom,
    photo_url: &'a Option<String>,
    role: &'a str,
    locale: &'a Option<String>,
    welcome_message: &'a Option<String>,
}

impl<'a> UserSnapshotJson<'a> {
    fn new(user: &'a User) -> Self {
        Self {
            id: user.id.as_str(),
            name: &user.name,
            custom: &user.custom,
            photo_url: &user.photo_url,
            role: user.role.as_deref().unwrap_or("default"),
            locale: &user.locale,
            welcome_message: &user.welcome_message,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReactionJson<'a> {
    emoji: &'a str,
    count: usize,
    current_user_reacted: bool,
}

/// A message in a snapshot: its own fields, the reply target one level deep, and (outside event frames, which must
/// not depend on who receives them) the reactions as this user sees them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageSnapshotJson<'a> {
    #[serde(flatten)]
    fields: MessageFieldsJson<'a>,
    seq: i64,
    referenced_message: Option<MessageFieldsJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reactions: Option<Vec<ReactionJson<'a>>>,
}

impl<'a> MessageSnapshotJson<'a> {
    fn new(view: &'a MessageView, context: &SnapshotContext<'_>, with_reactions: bool) -> Self {
        Self {
            fields: MessageFieldsJson::new(&view.message, view.sender.as_ref(), context),
            seq: view.message.seq.0,
            referenced_message: view
                .referenced
                .as_deref()
                .map(|referenced| MessageFieldsJson::new(&referenced.message, referenced.sender.as_ref(), context)),
            reactions: with_reactions.then(|| reactions(&view.message.reactions, context.me)),
        }
    }
}

fn reactions<'a>(summaries: &'a [ReactionSummary], me: Option<&UserId>) -> Vec<ReactionJson<'a>> {
    summaries
        .iter()
        .map(|summary| ReactionJson {
            emoji: summary.emoji.as_str(),
            count: summary.users.len(),
            current_user_reacted: me.is_some_and(|me| summary.users.contains(me)),
        })
        .collect()
}

/// What every message snapshot shows, and all a reply's target shows: it names its own reference by id only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageFieldsJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    sender: Option<UserSnapshotJson<'a>>,
    content: Vec<BlockJson>,
    plaintext: String,
    custom: &'a Custom,
    created_at: i64,
    edited_at: Option<i64>,
    origin: &'static str,
    referenced_message_id: Option<&'a str>,
}

impl<'a> MessageFieldsJson<'a> {
    fn new(message: &'a Message, sender: Option<&'a User>, context: &SnapshotContext<'_>) -> Self {
        let blocks = content_blocks(message, context);
        Self {
            id: message.id.as_str(),
            kind: message.kind.as_str(),
            sender: sender.map(UserSnapshotJson::new),
            plaintext: content::plaintext(&blocks),
            content: blocks.into_iter().map(BlockJson::from).collect(),
            custom: &message.custom,
            created_at: message.created_at,
            edited_at: message.edited_at,
            origin: message.origin.as_str(),
            referenced_message_id: message.referenced_message_id.as_ref().map(MessageId::as_str),
        }
    }
}

/// The content of a stored message: its text parsed with the rules it was sent under, or its file or location.
pub fn content_blocks(message: &Message, context: &SnapshotContext<'_>) -> Vec<ContentBlock> {
    if let Some(attachment) = &message.attachment {
        return vec![ContentBlock::File(FileBlock {
            url: context.links.file_url(context.app, &attachment.file_id, &attachment.filename),
            size: attachment.size,
            filename: attachment.filename.clone(),
        })];
    }
    if let Some(location) = message.location {
        return vec![ContentBlock::Location { latitude: location.latitude, longitude: location.longitude }];
    }
    vec![ContentBlock::Text { children: content::parse_markup(&message.text, message.links) }]
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum BlockJson {
    Text { children: Vec<NodeJson> },
    File { url: String, size: u64, filename: String },
    Location { latitude: f64, longitude: f64 },
}

impl From<ContentBlock> for BlockJson {
    fn from(block: ContentBlock) -> Self {
        match block {
            ContentBlock::Text { children } => {
                BlockJson::Text { children: children.into_iter().map(NodeJson::from).collect() }
            }
            ContentBlock::File(file) => BlockJson::File { url: file.url, size: file.size, filename: file.filename },
            ContentBlock::Location { latitude, longitude } => BlockJson::Location { latitude, longitude },
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum NodeJson {
    Plain(String),
    Node(TaggedNodeJson),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum TaggedNodeJson {
    Bold { children: Vec<NodeJson> },
    Italic { children: Vec<NodeJson> },
    Strikethrough { children: Vec<NodeJson> },
    BulletList { children: Vec<NodeJson> },
    BulletPoint { children: Vec<NodeJson> },
    CodeSpan { text: String },
    Link { url: String, children: Vec<NodeJson> },
    ActionLink { action: String, params: BTreeMap<String, String>, children: Vec<NodeJson> },
    ActionButton { action: String, params: BTreeMap<String, String>, children: Vec<NodeJson> },
    AutoLink { url: String, text: String },
    CustomEmoji { text: String },
    Mention { id: String, text: String },
}

impl From<TextNode> for NodeJson {
    fn from(node: TextNode) -> Self {
        let nodes = |children: Vec<TextNode>| children.into_iter().map(NodeJson::from).collect();
        NodeJson::Node(match node {
            TextNode::Plain(text) => return NodeJson::Plain(text),
            TextNode::Markup { kind: MarkupKind::Bold, children } => TaggedNodeJson::Bold { children: nodes(children) },
            TextNode::Markup { kind: MarkupKind::Italic, children } => {
                TaggedNodeJson::Italic { children: nodes(children) }
            }
            TextNode::Markup { kind: MarkupKind::Strikethrough, children } => {
                TaggedNodeJson::Strikethrough { children: nodes(children) }
            }
            TextNode::BulletList { children } => TaggedNodeJson::BulletList { children: nodes(children) },
            TextNode::BulletPoint { children } => TaggedNodeJson::BulletPoint { children: nodes(children) },
            TextNode::CodeSpan { text } => TaggedNodeJson::CodeSpan { text },
            TextNode::Link { url, children } => TaggedNodeJson::Link { url, children: nodes(children) },
            TextNode::ActionLink { action, params, children } => {
                TaggedNodeJson::ActionLink { action, params, children: nodes(children) }
            }
            TextNode::ActionButton { action, params, children } => {
                TaggedNodeJson::ActionButton { action, params, children: nodes(children) }
            }
            TextNode::AutoLink { url, text } => TaggedNodeJson::AutoLink { url, text },
            TextNode::CustomEmoji { text } => TaggedNodeJson::CustomEmoji { text },
            TextNode::Mention { id, text } => TaggedNodeJson::Mention { id, text },
        })
    }
}
