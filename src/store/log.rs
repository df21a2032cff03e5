//! The event log: every committed event, written in the same transaction as the change it records, so that what
//! was published can always be read again. Resumes and hole repairs replay a conversation's events from it by
//! `seq`; consumers that follow a whole app (webhooks) read it by `Position`, the commit order across all
//! conversations.
//!
//! This module is shared by every backend: the retention policy, and the record each event is kept as (JSON of the
//! domain event, enough to encode its frame or any later payload again). Backends store the record's `kind` and
//! `data` beside the conversation, `seq`, position and commit time.

use std::{borrow::Cow, collections::BTreeSet, time::Duration};

use serde::{Deserialize, Serialize};

use crate::domain::{
    content::Links,
    conversation::{Access, Conversation, ConversationView, Notify, Participant},
    event::{Event, EventKind, Logged, UserEvent, UserEventKind},
    ids::{AppId, ConversationId, MessageId, Seq, UserId},
    message::{Attachment, Location, Message, MessageType, MessageView, Origin, ReferencedView},
    reaction::{Emoji, ReactionSummary},
    user::User,
    Custom, Millis,
};

/// How long events are kept, unless configured otherwise (`--event-retention-hours`).
pub const DEFAULT_RETENTION_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Events kept per conversation, unless configured otherwise (`--event-retention-per-conversation`): a client
/// that missed more than this gets a fresh snapshot, which is cheaper than the replay anyway.
pub const DEFAULT_RETENTION_EVENTS_PER_CONVERSATION: u64 = 10_000;
/// Rows one pruning pass deletes at most, so that one pass never holds the writer for long.
pub const MAX_PRUNED_PER_PASS: u64 = 10_000;

/// A place in the log: positions grow in commit order across every conversation and app, and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub i64);

/// An event as the log holds it: a conversation's (`LoggedEvent`), or anything the log holds
/// (`LoggedEvent<Logged>`), in commit order.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent<E = Event> {
    pub position: Position,
    pub app: AppId,
    pub event: E,
    /// The wall-clock time of the commit, in Unix milliseconds.
    pub committed_at: Millis,
}

impl LoggedEvent<Logged> {
    /// The conversation event, if it is one.
    pub fn into_conversation(self) -> Option<LoggedEvent> {
        let LoggedEvent { position, app, event, committed_at } = self;
        match event {
            Logged::Conversation(event) => Some(LoggedEvent { position, app, event, committed_at }),
            Logged::User(_) => None,
        }
    }
}

/// What the log keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are pruned.
    pub max_age: Duration,
    /// Of each conversation, only the newest this many events are kept.
    pub max_events_per_conversation: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_age: DEFAULT_RETENTION_AGE, max_events_per_conversation: DEFAULT_RETENTION_EVENTS_PER_CONVERSATION }
    }
}

impl Retention {
    /// Events committed before this time are out of the retained range.
    pub fn oldest_kept(&self, now: Millis) -> Millis {
        now.saturating_sub(self.max_age.as_millis().min(i64::MAX as u128) as i64)
    }
}

/// The `stream` column: whose sequence an event's `seq` counts.
pub const CONVERSATION_STREAM: &str = "c";
pub const USER_STREAM: &str = "u";

/// The `kind` column and the JSON `data` column of an event.
pub fn encode(kind: &EventKind) -> (&'static str, String) {
    let record = Record::from(kind);
    let name = record.name();
    (name, serde_json::to_string(&record).expect("event records always encode"))
}

/// The columns of any logged event: `(stream, stream id, seq, kind, data)`.
pub fn encode_logged(logged: &Logged) -> (&'static str, &str, Seq, &'static str, String) {
    match logged {
        Logged::Conversation(event) => {
            let (kind, data) = encode(&event.kind);
            (CONVERSATION_STREAM, event.conversation_id.as_str(), event.seq, kind, data)
        }
        Logged::User(event) => {
            let record = UserRecordKind::from(&event.kind);
            let kind = record.name();
            let data = serde_json::to_string(&record).expect("event records always encode");
            (USER_STREAM, event.user_id.as_str(), event.seq, kind, data)
        }
    }
}

/// Reads any logged event back from its columns.
pub fn decode_logged(stream: &str, stream_id: String, seq: Seq, data: &str) -> Result<Logged, String> {
    match stream {
        CONVERSATION_STREAM => decode(ConversationId::from_trusted(stream_id), seq, data).map(Logged::Conversation),
        USER_STREAM => {
            let record: UserRecordKind<'_> = serde_json::from_str(data)
                .map_err(|error| format!("unreadable event of user {stream_id}/{}: {error}", seq.0))?;
            Ok(Logged::User(UserEvent { user_id: UserId::from_trusted(stream_id), seq, kind: record.into_kind() }))
        }
        other => Err(format!("unknown event stream {other:?}")),
    }
}

/// Reads an event back from its columns. A record that cannot be read (corruption, or a newer format) is an
/// error, never a silently different event.
pub fn decode(conversation_id: ConversationId, seq: Seq, data: &str) -> Result<Event, String> {
    let record: Record<'_> =
        serde_json::from_str(data).map_err(|error| format!("unreadable event {conversation_id}/{}: {error}", seq.0))?;
    Ok(Event { kind: record.into_kind(&conversation_id), conversation_id, seq })
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum Record<'a> {
    ConversationUpdated,
    ConversationDeleted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<ConversationRecord<'a>>,
    },
    ParticipantJoined {
        user_id: Cow<'a, str>,
        access: Cow<'a, str>,
        notify: Cow<'a, str>,
    },
    ParticipantUpdated {
        user_id: Cow<'a, str>,
        access: Cow<'a, str>,
        notify: Cow<'a, str>,
    },
    ParticipantLeft {
        user_id: Cow<'a, str>,
    },
    MessageCreated {
        message: ViewRecord<'a>,
    },
    MessageEdited {
        message: ViewRecord<'a>,
    },
    MessageDeleted {
        message_id: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<ViewRecord<'a>>,
    },
    AllMessagesDeleted,
    MessageImported {
        message_id: Cow<'a, str>,
    },
    ReactionAdded {
        message_id: Cow<'a, str>,
        emoji: Cow<'a, str>,
        user_id: Cow<'a, str>,
    },
    ReactionRemoved {
        message_id: Cow<'a, str>,
        emoji: Cow<'a, str>,
        user_id: Cow<'a, str>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum UserRecordKind<'a> {
    UserCreated {
        user: UserRecord<'a>,
    },
    UserUpdated {
        user: UserRecord<'a>,
    },
    ConversationRead {
        conversation_id: Cow<'a, str>,
        after: i64,
        until: i64,
        #[serde(default)]
        participants: u32,
    },
}

/// `(userId, access, notify, joinedAt)`
type ParticipantRecord<'a> = (Cow<'a, str>, Cow<'a, str>, Cow<'a, str>, Millis);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationRecord<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    photo_url: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    welcome_messages: Option<Cow<'a, [String]>>,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    custom: Cow<'a, Custom>,
    created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_message_at: Option<Millis>,
    last_seq: i64,
    participants: Vec<ParticipantRecord<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewRecord<'a> {
    message: MessageRecord<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<UserRecord<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referenced: Option<ReferencedRecord<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferencedRecord<'a> {
    message: MessageRecord<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<UserRecord<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageRecord<'a> {
    id: Cow<'a, str>,
    seq: i64,
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender_id: Option<Cow<'a, str>>,
    text: Cow<'a, str>,
    links_allowed: bool,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    custom: Cow<'a, Custom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referenced_message_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<AttachmentRecord<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<(f64, f64)>,
    origin: Cow<'a, str>,
    created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    read_by: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reactions: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentRecord<'a> {
    file_id: Cow<'a, str>,
    filename: Cow<'a, str>,
    size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRecord<'a> {
    id: Cow<'a, str>,
    name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<Cow<'a, [String]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<Cow<'a, [String]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    photo_url: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locale: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    welcome_message: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    custom: Cow<'a, Custom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    push_tokens: Option<Cow<'a, BTreeSet<String>>>,
    created_at: Millis,
}

/// Records leave out what is empty: a smaller log row is a cheaper commit.
#[allow(clippy::ptr_arg, reason = "serde hands the field over as it is declared")]
fn is_empty_map(custom: &Cow<'_, Custom>) -> bool {
    custom.is_empty()
}

impl Record<'_> {
    fn name(&self) -> &'static str {
        match self {
            Record::ConversationUpdated => "conversationUpdated",
            Record::ConversationDeleted { .. } => "conversationDeleted",
            Record::ParticipantJoined { .. } => "participantJoined",
            Record::ParticipantUpdated { .. } => "participantUpdated",
            Record::ParticipantLeft { .. } => "participantLeft",
            Record::MessageCreated { .. } => "messageCreated",
            Record::MessageEdited { .. } => "messageEdited",
            Record::MessageDeleted { .. } => "messageDeleted",
            Record::AllMessagesDeleted => "allMessagesDeleted",
            Record::MessageImported { .. } => "messageImported",
            Record::ReactionAdded { .. } => "reactionAdded",
            Record::ReactionRemoved { .. } => "reactionRemoved",
        }
    }

    fn into_kind(self, conversation_id: &ConversationId) -> EventKind {
        let user = |raw: Cow<'_, str>| UserId::from_trusted(raw.into_owned());
        let message_id = |raw: Cow<'_, str>| MessageId::from_trusted(raw.into_owned());
        let emoji = |raw: Cow<'_, str>| Emoji::from_trusted(raw.into_owned());
        match self {
            Record::ConversationUpdated => EventKind::ConversationUpdated,
            Record::ConversationDeleted { conversation } => EventKind::ConversationDeleted {
                conversation: conversation.map(|record| Box::new(record.into_view(conversation_id))),
            },
            Record::ParticipantJoined { user_id, access, notify } => EventKind::ParticipantJoined {
                user_id: user(user_id),
                access: access_of(&access),
                notify: Notify::from_stored(&notify),
            },
            Record::ParticipantUpdated { user_id, access, notify } => EventKind::ParticipantUpdated {
                user_id: user(user_id),
                access: access_of(&access),
                notify: Notify::from_stored(&notify),
            },
            Record::ParticipantLeft { user_id } => EventKind::ParticipantLeft { user_id: user(user_id) },
            Record::MessageCreated { message } => {
                EventKind::MessageCreated { message: Box::new(message.into_view(conversation_id)) }
            }
            Record::MessageEdited { message } => {
                EventKind::MessageEdited { message: Box::new(message.into_view(conversation_id)) }
            }
            Record::MessageDeleted { message_id: id, message } => EventKind::MessageDeleted {
                message_id: message_id(id),
                message: message.map(|view| Box::new(view.into_view(conversation_id))),
            },
            Record::AllMessagesDeleted => EventKind::AllMessagesDeleted,
            Record::MessageImported { message_id: id } => EventKind::MessageImported { message_id: message_id(id) },
            Record::ReactionAdded { message_id: id, emoji: e, user_id } => {
                EventKind::ReactionAdded { message_id: message_id(id), emoji: emoji(e), user_id: user(user_id) }
            }
            Record::ReactionRemoved { message_id: id, emoji: e, user_id } => {
                EventKind::ReactionRemoved { message_id: message_id(id), emoji: emoji(e), user_id: user(user_id) }
            }
        }
    }
}

fn access_of(raw: &str) -> Access {
    if raw == "Read" {
        Access::Read
    } else {
        Access::ReadWrite
    }
}

impl<'a> From<&'a EventKind> for Record<'a> {
    fn from(kind: &'a EventKind) -> Self {
        let s = |text: &'a str| Cow::Borrowed(text);
        match kind {
            EventKind::ConversationUpdated => Record::ConversationUpdated,
            EventKind::ConversationDeleted { conversation } => {
                Record::ConversationDeleted { conversation: conversation.as_deref().map(ConversationRecord::from) }
            }
            EventKind::ParticipantJoined { user_id, access, notify } => Record::ParticipantJoined {
                user_id: s(user_id.as_str()),
                access: s(access.as_str()),
                notify: s(notify.as_str()),
            },
            EventKind::ParticipantUpdated { user_id, access, notify } => Record::ParticipantUpdated {
                user_id: s(user_id.as_str()),
                access: s(access.as_str()),
                notify: s(notify.as_str()),
            },
            EventKind::ParticipantLeft { user_id } => Record::ParticipantLeft { user_id: s(user_id.as_str()) },
            EventKind::MessageCreated { message } => Record::MessageCreated { message: ViewRecord::from(&**message) },
            EventKind::MessageEdited { message } => Record::MessageEdited { message: ViewRecord::from(&**message) },
            EventKind::MessageDeleted { message_id, message } => Record::MessageDeleted {
                message_id: s(message_id.as_str()),
                message: message.as_deref().map(ViewRecord::from),
            },
            EventKind::AllMessagesDeleted => Record::AllMessagesDeleted,
            EventKind::MessageImported { message_id } => Record::MessageImported { message_id: s(message_id.as_str()) },
            EventKind::ReactionAdded { message_id, emoji, user_id } => Record::ReactionAdded {
                message_id: s(message_id.as_str()),
                emoji: s(emoji.as_str()),
                user_id: s(user_id.as_str()),
            },
            EventKind::ReactionRemoved { message_id, emoji, user_id } => Record::ReactionRemoved {
                message_id: s(message_id.as_str()),
                emoji: s(emoji.as_str()),
                user_id: s(user_id.as_str()),
            },
        }
    }
}

impl UserRecordKind<'_> {
    fn name(&self) -> &'static str {
        match self {
            UserRecordKind::UserCreated { .. } => "userCreated",
            UserRecordKind::UserUpdated { .. } => "userUpdated",
            UserRecordKind::ConversationRead { .. } => "conversationRead",
        }
    }

    fn into_kind(self) -> UserEventKind {
        match self {
            UserRecordKind::UserCreated { user } => UserEventKind::Created { user: Box::new(user.into_user()) },
            UserRecordKind::UserUpdated { user } => UserEventKind::Updated { user: Box::new(user.into_user()) },
            UserRecordKind::ConversationRead { conversation_id, after, until, participants } => {
                UserEventKind::ConversationRead {
                    conversation_id: ConversationId::from_trusted(conversation_id.into_owned()),
                    after: Seq(after),
                    until: Seq(until),
                    participants,
                }
            }
        }
    }
}

impl<'a> From<&'a UserEventKind> for UserRecordKind<'a> {
    fn from(kind: &'a UserEventKind) -> Self {
        match kind {
            UserEventKind::Created { user } => UserRecordKind::UserCreated { user: UserRecord::from(&**user) },
            UserEventKind::Updated { user } => UserRecordKind::UserUpdated { user: UserRecord::from(&**user) },
            UserEventKind::ConversationRead { conversation_id, after, until, participants } => {
                UserRecordKind::ConversationRead {
                    conversation_id: Cow::Borrowed(conversation_id.as_str()),
                    after: after.0,
                    until: until.0,
                    participants: *participants,
                }
            }
        }
    }
}

impl<'a> From<&'a ConversationView> for ConversationRecord<'a> {
    fn from(view: &'a ConversationView) -> Self {
        let conversation = &view.conversation;
        Self {
            subject: conversation.subject.as_deref().map(Cow::Borrowed),
            photo_url: conversation.photo_url.as_deref().map(Cow::Borrowed),
            welcome_messages: conversation.welcome_messages.as_deref().map(Cow::Borrowed),
            custom: Cow::Borrowed(&conversation.custom),
            created_at: conversation.created_at,
            last_message_at: conversation.last_message_at,
            last_seq: conversation.last_seq.0,
            participants: view
                .participants
                .iter()
                .map(|p| {
                    (
                        Cow::Borrowed(p.user_id.as_str()),
                        Cow::Borrowed(p.access.as_str()),
                        Cow::Borrowed(p.notify.as_str()),
                        p.joined_at,
                    )
                })
                .collect(),
        }
    }
}

impl ConversationRecord<'_> {
    /// The conversation as it was; read state and the last message are not recorded.
    fn into_view(self, conversation_id: &ConversationId) -> ConversationView {
        ConversationView {
            conversation: Conversation {
                id: conversation_id.clone(),
                subject: self.subject.map(Cow::into_owned),
                photo_url: self.photo_url.map(Cow::into_owned),
                welcome_messages: self.welcome_messages.map(Cow::into_owned),
                custom: self.custom.into_owned(),
                created_at: self.created_at,
                last_message_at: self.last_message_at,
                last_seq: Seq(self.last_seq),
            },
            participants: self
                .participants
                .into_iter()
                .map(|(user_id, access, notify, joined_at)| Participant {
                    user_id: UserId::from_trusted(user_id.into_owned()),
                    access: access_of(&access),
                    notify: Notify::from_stored(&notify),
                    joined_at,
                    is_unread: false,
                    unread_message_count: 0,
                })
                .collect(),
            last_message: None,
        }
    }
}

impl<'a> From<&'a MessageView> for ViewRecord<'a> {
    fn from(view: &'a MessageView) -> Self {
        Self {
            message: MessageRecord::from(&view.message),
            sender: view.sender.as_ref().map(UserRecord::from),
            referenced: view.referenced.as_deref().map(|referenced| ReferencedRecord {
                message: MessageRecord::from(&referenced.message),
                sender: referenced.sender.as_ref().map(UserRecord::from),
            }),
        }
    }
}

impl ViewRecord<'_> {
    fn into_view(self, conversation_id: &ConversationId) -> MessageView {
        MessageView {
            message: self.message.into_message(conversation_id),
            sender: self.sender.map(UserRecord::into_user),
            referenced: self.referenced.map(|referenced| {
                Box::new(ReferencedView {
                    message: referenced.message.into_message(conversation_id),
                    sender: referenced.sender.map(UserRecord::into_user),
                })
            }),
        }
    }
}

impl<'a> From<&'a Message> for MessageRecord<'a> {
    fn from(message: &'a Message) -> Self {
        Self {
            id: Cow::Borrowed(message.id.as_str()),
            seq: message.seq.0,
            kind: Cow::Borrowed(message.kind.as_str()),
            sender_id: message.sender_id.as_ref().map(|id| Cow::Borrowed(id.as_str())),
            text: Cow::Borrowed(&message.text),
            links_allowed: message.links == Links::Allowed,
            custom: Cow::Borrowed(&message.custom),
            referenced_message_id: message.referenced_message_id.as_ref().map(|id| Cow::Borrowed(id.as_str())),
            attachment: message.attachment.as_ref().map(|file| AttachmentRecord {
                file_id: Cow::Borrowed(&file.file_id),
                filename: Cow::Borrowed(&file.filename),
                size: file.size,
            }),
            location: message.location.map(|location| (location.latitude, location.longitude)),
            origin: Cow::Borrowed(message.origin.as_str()),
            created_at: message.created_at,
            edited_at: message.edited_at,
            read_by: message.read_by.iter().map(|id| Cow::Borrowed(id.as_str())).collect(),
            reactions: message
                .reactions
                .iter()
                .map(|summary| {
                    let users = summary.users.iter().map(|id| Cow::Borrowed(id.as_str())).collect();
                    (Cow::Borrowed(summary.emoji.as_str()), users)
                })
                .collect(),
        }
    }
}

impl MessageRecord<'_> {
    fn into_message(self, conversation_id: &ConversationId) -> Message {
        Message {
            id: MessageId::from_trusted(self.id.into_owned()),
            conversation_id: conversation_id.clone(),
            seq: Seq(self.seq),
            kind: if self.kind == "SystemMessage" { MessageType::SystemMessage } else { MessageType::UserMessage },
            sender_id: self.sender_id.map(|id| UserId::from_trusted(id.into_owned())),
            text: self.text.into_owned(),
            links: if self.links_allowed { Links::Allowed } else { Links::Refused },
            custom: self.custom.into_owned(),
            referenced_message_id: self.referenced_message_id.map(|id| MessageId::from_trusted(id.into_owned())),
            attachment: self.attachment.map(|file| Attachment {
                file_id: file.file_id.into_owned(),
                filename: file.filename.into_owned(),
                size: file.size,
            }),
            location: self.location.map(|(latitude, longitude)| Location { latitude, longitude }),
            origin: Origin::from_stored(&self.origin),
            created_at: self.created_at,
            edited_at: self.edited_at,
            read_by: self.read_by.into_iter().map(|id| UserId::from_trusted(id.into_owned())).collect(),
            reactions: self
                .reactions
                .into_iter()
                .map(|(emoji, users)| ReactionSummary {
                    emoji: Emoji::from_trusted(emoji.into_owned()),
                    users: users.into_iter().map(|id| UserId::from_trusted(id.into_owned())).collect(),
                })
                .collect(),
        }
    }
}

impl<'a> From<&'a User> for UserRecord<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            id: Cow::Borrowed(user.id.as_str()),
            name: Cow::Borrowed(&user.name),
            email: user.email.as_deref().map(Cow::Borrowed),
            phone: user.phone.as_deref().map(Cow::Borrowed),
            photo_url: user.photo_url.as_deref().map(Cow::Borrowed),
            locale: user.locale.as_deref().map(Cow::Borrowed),
            role: user.role.as_deref().map(Cow::Borrowed),
            welcome_message: user.welcome_message.as_deref().map(Cow::Borrowed),
            custom: Cow::Borrowed(&user.custom),
            push_tokens: user.push_tokens.as_ref().map(Cow::Borrowed),
            created_at: user.created_at,
        }
    }
}

impl UserRecord<'_> {
    fn into_user(self) -> User {
        User {
            id: UserId::from_trusted(self.id.into_owned()),
            name: self.name.into_owned(),
            email: self.email.map(Cow::into_owned),
            phone: self.phone.map(Cow::into_owned),
            photo_url: self.photo_url.map(Cow::into_owned),
            locale: self.locale.map(Cow::into_owned),
            role: self.role.map(Cow::into_owned),
            welcome_message: self.welcome_message.map(Cow::into_owned),
            custom: self.custom.into_owned(),
            push_tokens: self.push_tokens.map(Cow::into_owned),
            created_at: self.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: UserId::parse(id).unwrap(),
            name: format!("{id} name"),
            email: Some(vec![format!("{id}@example.com")]),
            phone: None,
            photo_url: Some("https://example.com/p.png".into()),
            locale: None,
            role: Some("buyer".into()),
            welcome_message: None,
            custom: Custom::from([("k".into(), "v".into())]),
            push_tokens: Some(BTreeSet::from(["fcm:x".to_owned()])),
            created_at: 5,
        }
    }

    fn message(id: &str, seq: i64) -> Message {
        Message {
            id: MessageId::parse(id).unwrap(),
            conversation_id: ConversationId::parse("c").unwrap(),
            seq: Seq(seq),
            kind: MessageType::UserMessage,
            sender_id: Some(UserId::parse("alice").unwrap()),
            text: "hi *there*".into(),
            links: Links::Refused,
            custom: Custom::from([("a".into(), "b".into())]),
            referenced_message_id: None,
            attachment: Some(Attachment { file_id: "f1".into(), filename: "p.png".into(), size: 7 }),
            location: Some(Location { latitude: 1.5, longitude: -2.25 }),
            origin: Origin::Web,
            created_at: 10,
            edited_at: Some(11),
            read_by: vec![UserId::parse("bob").unwrap()],
            reactions: vec![ReactionSummary {
                emoji: Emoji::parse("👍").unwrap(),
                users: vec![UserId::parse("bob").unwrap()],
            }],
        }
    }

    #[test]
    fn every_kind_of_event_reads_back_as_it_was_written() {
        let conversation = ConversationId::parse("c").unwrap();
        let mut reply = message("m2", 4);
        reply.referenced_message_id = Some(MessageId::parse("m1").unwrap());
        let view = MessageView {
            message: reply,
            sender: Some(user("alice")),
            referenced: Some(Box::new(ReferencedView { message: message("m1", 3), sender: None })),
        };
        let (bob, m1, emoji) =
            (UserId::parse("bob").unwrap(), MessageId::parse("m1").unwrap(), Emoji::parse(":party:").unwrap());
        let kinds = vec![
            EventKind::ConversationUpdated,
            EventKind::ConversationDeleted { conversation: None },
            EventKind::ConversationDeleted { conversation: Some(Box::new(conversation_view())) },
            EventKind::ParticipantJoined { user_id: bob.clone(), access: Access::Read, notify: Notify::MentionsOnly },
            EventKind::ParticipantUpdated { user_id: bob.clone(), access: Access::ReadWrite, notify: Notify::None },
            EventKind::ParticipantLeft { user_id: bob.clone() },
            EventKind::MessageCreated { message: Box::new(view.clone()) },
            EventKind::MessageEdited { message: Box::new(view.clone()) },
            EventKind::MessageDeleted { message_id: m1.clone(), message: None },
            EventKind::MessageDeleted { message_id: m1.clone(), message: Some(Box::new(view)) },
            EventKind::AllMessagesDeleted,
            EventKind::MessageImported { message_id: m1.clone() },
            EventKind::ReactionAdded { message_id: m1.clone(), emoji: emoji.clone(), user_id: bob.clone() },
            EventKind::ReactionRemoved { message_id: m1, emoji, user_id: bob },
        ];
        for (index, kind) in kinds.into_iter().enumerate() {
            let (name, data) = encode(&kind);
            let seq = Seq(index as i64 + 1);
            let event = decode(conversation.clone(), seq, &data).unwrap();
            assert_eq!(event, Event { conversation_id: conversation.clone(), seq, kind }, "{name}");
        }
    }

    fn conversation_view() -> ConversationView {
        ConversationView {
            conversation: Conversation {
                id: ConversationId::parse("c").unwrap(),
                subject: Some("Order".into()),
                photo_url: None,
                welcome_messages: Some(vec!["hello".into()]),
                custom: Custom::from([("k".into(), "v".into())]),
                created_at: 3,
                last_message_at: Some(9),
                last_seq: Seq(7),
            },
            participants: vec![Participant {
                user_id: UserId::parse("bob").unwrap(),
                access: Access::Read,
                notify: Notify::MentionsOnly,
                joined_at: 4,
                is_unread: false,
                unread_message_count: 0,
            }],
            last_message: None,
        }
    }

    #[test]
    fn every_kind_of_user_event_reads_back_as_it_was_written() {
        let kinds = vec![
            UserEventKind::Created { user: Box::new(user("alice")) },
            UserEventKind::Updated { user: Box::new(user("alice")) },
            UserEventKind::ConversationRead {
                conversation_id: ConversationId::parse("c").unwrap(),
                after: Seq(2),
                until: Seq(9),
                participants: 3,
            },
        ];
        for (index, kind) in kinds.into_iter().enumerate() {
            let logged =
                Logged::User(UserEvent { user_id: UserId::parse("alice").unwrap(), seq: Seq(index as i64 + 1), kind });
            let (stream, id, seq, name, data) = encode_logged(&logged);
            assert_eq!(decode_logged(stream, id.to_owned(), seq, &data).unwrap(), logged, "{name}");
        }
        assert!(decode_logged("x", "alice".into(), Seq(1), "{}").is_err());
    }

    #[test]
    fn an_unreadable_record_is_an_error() {
        assert!(decode(ConversationId::parse("c").unwrap(), Seq(1), "{\"kind\":\"fromTheFuture\"}").is_err());
    }
}
