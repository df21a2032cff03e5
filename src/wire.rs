//! The JSON shapes of domain types: REST responses here, message snapshots for the socket in `snapshot`, content a
//! client sends in `content`, filters in `filter`. The only place (with `api` request bodies and
//! `realtime::frames`) that knows how a domain value looks on the wire.

pub mod content;
pub mod filter;
pub mod snapshot;
pub mod webhook;

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{
    conversation::{ConversationView, Notify, Participant},
    ids::AppId,
    message::Message,
    user::User,
    Custom, Field,
};

/// Reads a field that may be absent (unchanged), `null` (cleared) or a value (set).
/// Use with `#[serde(default, deserialize_with = "wire::field")]`.
pub fn field<'de, D, T>(deserializer: D) -> Result<Field<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(match Option::<T>::deserialize(deserializer)? {
        Some(value) => Field::Set(value),
        None => Field::Clear,
    })
}

/// What a URL path segment must escape (RFC 3986): controls, space, the delimiters and `%`; every byte of a
/// non-ASCII character is escaped too. Dots, dashes and the like stay as they are: `photo.png`, not `photo%2Epng`.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Where stored files are served: `{public_url}/v1/{appId}/files/{fileId}/{filename}`.
#[derive(Clone, Debug)]
pub struct Links {
    pub public_url: String,
}

impl Links {
    pub fn file_url(&self, app: &AppId, file_id: &str, filename: &str) -> String {
        format!(
            "{}/v1/{}/files/{}/{}",
            self.public_url.trim_end_matches('/'),
            utf8_percent_encode(app.as_str(), PATH_SEGMENT),
            file_id,
            utf8_percent_encode(filename, PATH_SEGMENT)
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a Option<Vec<String>>,
    phone: &'a Option<Vec<String>>,
    photo_url: &'a Option<String>,
    locale: &'a Option<String>,
    role: &'a str,
    welcome_message: &'a Option<String>,
    custom: &'a Custom,
    push_tokens: Option<BTreeMap<&'a str, bool>>,
    created_at: i64,
}

impl<'a> UserJson<'a> {
    pub fn new(user: &'a User) -> Self {
        Self {
            id: user.id.as_str(),
            name: &user.name,
            email: &user.email,
            phone: &user.phone,
            photo_url: &user.photo_url,
            locale: &user.locale,
            role: user.role.as_deref().unwrap_or("default"),
            welcome_message: &user.welcome_message,
            custom: &user.custom,
            push_tokens: user.push_tokens.as_ref().map(|tokens| tokens.iter().map(|t| (t.as_str(), true)).collect()),
            created_at: user.created_at,
        }
    }
}

#[derive(Serialize)]
pub struct AttachmentJson {
    url: String,
    size: u64,
}

#[derive(Serialize)]
pub struct ReactionJson<'a> {
    emoji: &'a str,
    count: usize,
    users: Vec<&'a str>,
}

/// The REST `Message` of seed 000, plus `reactions` (oldest emoji first).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson<'a> {
    id: &'a str,
    conversation_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    sender_id: Option<&'a str>,
    text: &'a str,
    custom: &'a Custom,
    referenced_message_id: Option<&'a str>,
    attachment: Option<AttachmentJson>,
    location: Option<[f64; 2]>,
    origin: &'a str,
    created_at: i64,
    edited_at: Option<i64>,
    read_by: Vec<&'a str>,
    reactions: Vec<ReactionJson<'a>>,
}

impl<'a> MessageJson<'a> {
    pub fn new(message: &'a Message, app: &AppId, links: &Links) -> Self {
        Self {
            id: message.id.as_str(),
            conversation_id: message.conversation_id.as_str(),
            kind: message.kind.as_str(),
            sender_id: message.sender_id.as_ref().map(|id| id.as_str()),
            text: &message.text,
            custom: &message.custom,
            referenced_message_id: message.referenced_message_id.as_ref().map(|id| id.as_str()),
            attachment: message.attachment.as_ref().map(|attachment| AttachmentJson {
                url: links.file_url(app, &attachment.file_id, &attachment.filename),
                size: attachment.size,
            }),
            location: message.location.map(|location| [location.latitude, location.longitude]),
            origin: message.origin.as_str(),
            created_at: message.created_at,
            edited_at: message.edited_at,
            read_by: message.read_by.iter().map(|id| id.as_str()).collect(),
            reactions: message
                .reactions
                .iter()
                .map(|summary| ReactionJson {
                    emoji: summary.emoji.as_str(),
                    count: summary.users.len(),
                    users: summary.users.iter().map(|id| id.as_str()).collect(),
                })
                .collect(),
        }
    }
}

/// `true`, `false` or `"MentionsOnly"`.
#[derive(Clone, Copy, Serialize, Deserialize, Debug, PartialEq)]
#[serde(untagged)]
pub enum NotifyJson {
    Bool(bool),
    Text(MentionsOnly),
}

#[derive(Clone, Copy, Serialize, Deserialize, Debug, PartialEq)]
pub enum MentionsOnly {
    MentionsOnly,
}

impl From<Notify> for NotifyJson {
    fn from(notify: Notify) -> Self {
        match notify {
            Notify::All => NotifyJson::Bool(true),
            Notify::None => NotifyJson::Bool(false),
            Notify::MentionsOnly => NotifyJson::Text(MentionsOnly::MentionsOnly),
        }
    }
}

impl From<NotifyJson> for Notify {
    fn from(notify: NotifyJson) -> Self {
        match notify {
            NotifyJson::Bool(true) => Notify::All,
            NotifyJson::Bool(false) => Notify::None,
            NotifyJson::Text(MentionsOnly::MentionsOnly) => Notify::MentionsOnly,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipationJson {
    access: &'static str,
    notify: NotifyJson,
    is_unread: bool,
}

/// The REST `Conversation` of seed 001.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationJson<'a> {
    id: &'a str,
    subject: &'a Option<String>,
    photo_url: &'a Option<String>,
    welcome_messages: &'a Option<Vec<String>>,
    custom: &'a Custom,
    last_message: Option<MessageJson<'a>>,
    participants: BTreeMap<&'a str, ParticipationJson>,
    created_at: i64,
    topic_id: Option<&'a str>,
}

impl<'a> ConversationJson<'a> {
    pub fn new(view: &'a ConversationView, app: &AppId, links: &Links) -> Self {
        let conversation = &view.conversation;
        Self {
            id: conversation.id.as_str(),
            subject: &conversation.subject,
            photo_url: &conversation.photo_url,
            welcome_messages: &conversation.welcome_messages,
            custom: &conversation.custom,
            last_message: view.last_message.as_ref().map(|message| MessageJson::new(message, app, links)),
            participants: view
                .participants
                .iter()
                .map(|participant| {
                    let participation = ParticipationJson {
                        access: participant.access.as_str(),
                        notify: participant.notify.into(),
                        is_unread: participant.is_unread,
                    };
                    (participant.user_id.as_str(), participation)
                })
                .collect(),
            created_at: conversation.created_at,
            topic_id: None,
        }
    }
}

/// An entry of `GET /users/{id}/conversations`: the conversation plus that user's own fields (reference §5 #6).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserConversationJson<'a> {
    #[serde(flatten)]
    conversation: ConversationJson<'a>,
    is_unread: bool,
    unread_message_count: u64,
    access: &'static str,
    notify: NotifyJson,
    joined_at: i64,
}

impl<'a> UserConversationJson<'a> {
    pub fn new(view: &'a ConversationView, participant: &Participant, app: &AppId, links: &Links) -> Self {
        Self {
            conversation: ConversationJson::new(view, app, links),
            is_unread: participant.is_unread,
            unread_message_count: participant.unread_message_count,
            access: participant.access.as_str(),
            notify: participant.notify.into(),
            joined_at: participant.joined_at,
        }
    }
}

/// The `{"data": [...]}` envelope of every REST list.
#[derive(Serialize)]
pub struct ListJson<T> {
    pub data: Vec<T>,
}

/// One entry of the answer to a send: `{"id": "msg_..."}`.
#[derive(Serialize)]
pub struct MessageIdJson<'a> {
    pub id: &'a str,
}
