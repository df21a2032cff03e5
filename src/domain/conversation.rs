//! Conversations and their participants, and the per-user view of a conversation.

use super::{
    ids::{ConversationId, Seq, UserId},
    message::Message,
    Custom, CustomPatch, Field, Millis, Rejection, ValidationError,
};

#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub subject: Option<String>,
    pub photo_url: Option<String>,
    pub welcome_messages: Option<Vec<String>>,
    pub custom: Custom,
    pub created_at: Millis,
    /// Time of the newest message, if any message is left.
    pub last_message_at: Option<Millis>,
    /// The sequence number of the conversation's latest event.
    pub last_seq: Seq,
}

impl Conversation {
    /// The time `lastActivity` ordering sorts by: the last message, else the creation.
    pub fn last_activity_at(&self) -> Millis {
        self.last_message_at.unwrap_or(self.created_at)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    Read,
}

impl Access {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "ReadWrite" => Ok(Access::ReadWrite),
            "Read" => Ok(Access::Read),
            other => Err(ValidationError::new("access", format!("must be \"ReadWrite\" or \"Read\", not {other:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadWrite => "ReadWrite",
            Access::Read => "Read",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    All,
    None,
    MentionsOnly,
}

impl Notify {
    /// Storage form: `true`, `false` or `MentionsOnly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Notify::All => "true",
            Notify::None => "false",
            Notify::MentionsOnly => "MentionsOnly",
        }
    }

    pub fn from_stored(raw: &str) -> Self {
        match raw {
            "false" => Notify::None,
            "MentionsOnly" => Notify::MentionsOnly,
            _ => Notify::All,
        }
    }
}

/// One user's membership of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    pub user_id: UserId,
    pub access: Access,
    pub notify: Notify,
    pub joined_at: Millis,
    /// Unread: manually marked unread, or messages from others after the user's read marker.
    pub is_unread: bool,
    pub unread_message_count: u64,
}

/// Participation settings; absent fields take the defaults on PUT and stay on PATCH.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParticipantSettings {
    pub access: Option<Access>,
    pub notify: Option<Notify>,
}

/// A `PUT /conversations/{id}` body. `participants` only ever adds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversationPatch {
    pub participants: Vec<UserId>,
    pub subject: Field<String>,
    pub photo_url: Field<String>,
    pub welcome_messages: Field<Vec<String>>,
    pub custom: Field<CustomPatch>,
}

impl ConversationPatch {
    pub fn apply(self, conversation: &mut Conversation) {
        conversation.subject = self.subject.apply(conversation.subject.take());
        conversation.photo_url = self.photo_url.apply(conversation.photo_url.take());
        conversation.welcome_messages = self.welcome_messages.apply(conversation.welcome_messages.take());
        match self.custom {
            Field::Unchanged => {}
            Field::Clear => conversation.custom.clear(),
            Field::Set(patch) => merge_custom(&mut conversation.custom, patch),
        }
    }

    /// Whether the patch changes the conversation's own fields (participants aside).
    pub fn changes_fields(&self) -> bool {
        !(self.subject.is_unchanged()
            && self.photo_url.is_unchanged()
            && self.welcome_messages.is_unchanged()
            && self.custom.is_unchanged())
    }
}

/// Applies a custom-map patch: `Some` sets a key, `None` deletes it.
pub fn merge_custom(custom: &mut Custom, patch: CustomPatch) {
    for (key, value) in patch {
        match value {
            Some(value) => {
                custom.insert(key, value);
            }
            None => {
                custom.remove(&key);
            }
        }
    }
}

/// A conversation as the REST API shows it: with its participants and last message.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationView {
    pub conversation: Conversation,
    pub participants: Vec<Participant>,
    pub last_message: Option<Message>,
}

impl ConversationView {
    pub fn participant(&self, user_id: &UserId) -> Option<&Participant> {
        self.participants.iter().find(|participant| &participant.user_id == user_id)
    }
}

/// A user acting in a conversation must take part in it. `access` is their participation as the store read it
/// (`None`: not a participant); `field` names where the user came from, for the error.
pub fn check_participant(field: &str, user: &UserId, access: Option<Access>) -> Result<Access, Rejection> {
    access.ok_or_else(|| Rejection::NotAParticipant { field: field.to_owned(), user: user.clone() })
}
