//! The JSON of a message as snapshots and event frames show it (`proto/PROTOCOL.md`, "MessageSnapshot"): its own
//! fields, its sender's public fields, the reply target one level deep, and (outside event frames) the reactions
//! as one user sees them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    domain::{
        content::{self, ContentBlock, FileBlock, MarkupKind, TextNode},
        conversation::{Access, Conversation, Notify, Participant},
        ids::{AppId, MessageId, UserId},
        message::{Message, MessageView},
        reaction::ReactionSummary,
        user::User,
        Custom,
    },
    wire::{Links, NotifyJson},
};

/// Context for encoding messages: where files are served, and who `currentUserReacted` is about.
pub struct SnapshotContext<'a> {
    pub app: &'a AppId,
    pub links: &'a Links,
    pub me: Option<&'a UserId>,
}

/// The public fields of a user (no email, phone or push tokens).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSnapshotJson<'a> {
    id: &'a str,
    name: &'a str,
    custom: &'a Custom,
    photo_url: &'a Option<String>,
    role: &'a str,
    locale: &'a Option<String>,
    welcome_message: &'a Option<String>,
}

impl<'a> UserSnapshotJson<'a> {
    pub fn new(user: &'a User) -> Self {
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
pub struct ReactionJson<'a> {
    emoji: &'a str,
    count: usize,
    current_user_reacted: bool,
}

/// A message in a snapshot: its own fields, the reply target one level deep, and (outside event frames, which must
/// not depend on who receives them) the reactions as this user sees them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSnapshotJson<'a> {
    #[serde(flatten)]
    fields: MessageFieldsJson<'a>,
    seq: i64,
    referenced_message: Option<MessageFieldsJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reactions: Option<Vec<ReactionJson<'a>>>,
}

impl<'a> MessageSnapshotJson<'a> {
    pub fn new(view: &'a MessageView, context: &SnapshotContext<'_>, with_reactions: bool) -> Self {
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
pub struct MessageFieldsJson<'a> {
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
    pub fn new(message: &'a Message, sender: Option<&'a User>, context: &SnapshotContext<'_>) -> Self {
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
pub enum BlockJson {
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
pub enum NodeJson {
    Plain(String),
    Node(TaggedNodeJson),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TaggedNodeJson {
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

/// A conversation as one participant sees it (the Data API's ConversationSnapshot).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSnapshotJson<'a> {
    id: &'a str,
    subject: &'a Option<String>,
    photo_url: &'a Option<String>,
    welcome_messages: &'a [String],
    custom: &'a Custom,
    created_at: i64,
    joined_at: i64,
    last_message: Option<MessageSnapshotJson<'a>>,
    unread_message_count: u64,
    read_until: i64,
    everyone_read_until: i64,
    is_unread: bool,
    access: &'static str,
    notify: NotifyJson,
}

impl<'a> ConversationSnapshotJson<'a> {
    /// `read_until` and `everyone_read_until` as times (0 before any read).
    pub fn new(
        conversation: &'a Conversation,
        participant: &Participant,
        last_message: Option<&'a MessageView>,
        (read_until, everyone_read_until): (i64, i64),
        context: &SnapshotContext<'_>,
    ) -> Self {
        Self {
            id: conversation.id.as_str(),
            subject: &conversation.subject,
            photo_url: &conversation.photo_url,
            welcome_messages: conversation.welcome_messages.as_deref().unwrap_or_default(),
            custom: &conversation.custom,
            created_at: conversation.created_at,
            joined_at: participant.joined_at,
            last_message: last_message.map(|view| MessageSnapshotJson::new(view, context, true)),
            unread_message_count: participant.unread_message_count,
            read_until,
            everyone_read_until,
            is_unread: participant.is_unread,
            access: participant.access.as_str(),
            notify: participant.notify.into(),
        }
    }
}

/// One participant (the Data API's ParticipantSnapshot).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantSnapshotJson<'a> {
    user: UserSnapshotJson<'a>,
    access: &'static str,
    notify: NotifyJson,
    joined_at: i64,
}

impl<'a> ParticipantSnapshotJson<'a> {
    pub fn new(user: &'a User, access: Access, notify: Notify, joined_at: i64) -> Self {
        Self { user: UserSnapshotJson::new(user), access: access.as_str(), notify: notify.into(), joined_at }
    }
}
