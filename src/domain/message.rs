//! Messages: what a send carries, what is stored, and the rules a send or an edit must pass before it is written.

use super::{
    content::Links,
    conversation::{check_participant, Access},
    ids::{ConversationId, MessageId, Seq, UserId},
    limits::{
        IDEMPOTENCY_WINDOW_MS, MAX_CUSTOM_ENTRY_BYTES, MAX_CUSTOM_KEYS, MAX_IDEMPOTENCY_KEY_CHARS, MAX_TEXT_BYTES,
    },
    reaction::ReactionSummary,
    user::User,
    Actor, Custom, CustomPatch, Millis, Rejection, ValidationError,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    UserMessage,
    SystemMessage,
}

impl MessageType {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "UserMessage" => Ok(Self::UserMessage),
            "SystemMessage" => Ok(Self::SystemMessage),
            other => Err(ValidationError::new(
                "type",
                format!("must be \"UserMessage\" or \"SystemMessage\", not {other:?}"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserMessage => "UserMessage",
            Self::SystemMessage => "SystemMessage",
        }
    }
}

/// How a message was sent (reference §5 #10): REST and the Data API send `rest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Rest,
    Web,
    Email,
    Import,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Rest => "rest",
            Origin::Web => "web",
            Origin::Email => "email",
            Origin::Import => "import",
        }
    }

    pub fn from_stored(raw: &str) -> Self {
        match raw {
            "web" => Origin::Web,
            "email" => Origin::Email,
            "import" => Origin::Import,
            _ => Origin::Rest,
        }
    }
}

/// A file attached to a message. The bytes live in the store under `file_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub file_id: String,
    pub filename: String,
    pub size: u64,
}

/// `[latitude, longitude]` (reference §5 #8), validated to lie on the globe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

impl Location {
    pub fn parse(latitude: f64, longitude: f64) -> Result<Self, ValidationError> {
        if !(-90.0..=90.0).contains(&latitude) {
            return Err(ValidationError::new("location", "latitude must be between -90 and 90"));
        }
        if !(-180.0..=180.0).contains(&longitude) {
            return Err(ValidationError::new("location", "longitude must be between -180 and 180"));
        }
        Ok(Self { latitude, longitude })
    }
}

/// A stored message as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    /// The sequence number of the event that created it; orders messages in their conversation.
    pub seq: Seq,
    pub kind: MessageType,
    pub sender_id: Option<UserId>,
    pub text: String,
    /// Whether `text` may hold links and action buttons: its content is parsed with these rules.
    pub links: Links,
    pub custom: Custom,
    pub referenced_message_id: Option<MessageId>,
    pub attachment: Option<Attachment>,
    pub location: Option<Location>,
    pub origin: Origin,
    pub created_at: Millis,
    pub edited_at: Option<Millis>,
    /// Users other than the sender who have read it; empty in conversations over the `readBy` limit.
    pub read_by: Vec<UserId>,
    /// Oldest emoji first.
    pub reactions: Vec<ReactionSummary>,
}

/// A message with what a snapshot expands: its sender and, one level deep, the message it replies to.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageView {
    pub message: Message,
    pub sender: Option<User>,
    pub referenced: Option<Box<ReferencedView>>,
}

/// The message a reply points at, with its sender; it does not expand its own reference.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferencedView {
    pub message: Message,
    pub sender: Option<User>,
}

/// What a message carries besides its metadata: exactly one of these.
#[derive(Clone, Debug, PartialEq)]
pub enum MessageBody {
    Text(String),
    Attachment { token: String },
    Location(Location),
}

/// One validated item of a send batch.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub kind: MessageType,
    pub sender_id: Option<UserId>,
    pub body: MessageBody,
    pub links: Links,
    pub custom: Custom,
    pub referenced_message_id: Option<MessageId>,
    pub idempotency_key: Option<String>,
    pub origin: Origin,
}

impl NewMessage {
    /// Checks the rules of seed 000 that need no stored data: a user message has a sender and a system message
    /// has none; system messages carry no location; text, custom and the idempotency key are within limits.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match (self.kind, &self.sender_id) {
            (MessageType::UserMessage, None) => {
                return Err(ValidationError::new("sender", "is required for a UserMessage"));
            }
            (MessageType::SystemMessage, Some(_)) => {
                return Err(ValidationError::new(
                    "sender",
                    "must not be given for a SystemMessage (use type \"UserMessage\")",
                ));
            }
            _ => {}
        }
        match &self.body {
            MessageBody::Text(text) => validate_text(text)?,
            MessageBody::Location(_) if self.kind == MessageType::SystemMessage => {
                return Err(ValidationError::new("location", "system messages do not support locations"));
            }
            MessageBody::Location(_) | MessageBody::Attachment { .. } => {}
        }
        if let Some(referenced) = &self.referenced_message_id {
            if self.kind == MessageType::SystemMessage {
                return Err(ValidationError::new(
                    "referencedMessageId",
                    format!("system messages cannot reply (to \"{referenced}\")"),
                ));
            }
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
                return Err(ValidationError::new(
                    "idempotencyKey",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
                ));
            }
        }
        validate_custom(self.custom.iter().map(|(key, value)| (key, Some(value))))
    }
}

/// An edit, from REST (`PUT .../messages/{id}`) or a user on the socket.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageEdit {
    /// New text, and the markup rules it is parsed with.
    pub text: Option<(String, Links)>,
    /// Merged into the stored map; a `None` value deletes that key.
    pub custom: Option<CustomPatch>,
    /// Removes every custom key before `custom` is merged.
    pub clear_custom: bool,
    pub mark_edited: bool,
}

impl MessageEdit {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some((text, _)) = &self.text {
            validate_text(text)?;
        }
        if let Some(custom) = &self.custom {
            validate_custom(custom.iter().map(|(key, value)| (key, value.as_ref())))?;
        }
        Ok(())
    }
}

pub fn validate_text(text: &str) -> Result<(), ValidationError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ValidationError::new("text", format!("must be at most {MAX_TEXT_BYTES} bytes")));
    }
    Ok(())
}

pub fn validate_custom<'a>(
    entries: impl ExactSizeIterator<Item = (&'a String, Option<&'a String>)>,
) -> Result<(), ValidationError> {
    if entries.len() > MAX_CUSTOM_KEYS {
        return Err(ValidationError::new("custom", format!("must have at most {MAX_CUSTOM_KEYS} keys")));
    }
    for (key, value) in entries {
        if key.len() > MAX_CUSTOM_ENTRY_BYTES || value.is_some_and(|value| value.len() > MAX_CUSTOM_ENTRY_BYTES) {
            return Err(ValidationError::new(
                format!("custom.{key}"),
                format!("keys and values must be at most {MAX_CUSTOM_ENTRY_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

// ---- Rules that need stored facts. Backends read the facts inside their write transaction and call these, so
// every backend applies the same rules. ----

/// A sender must take part in the conversation with ReadWrite access.
pub fn check_sender(field: &str, sender: &UserId, access: Option<Access>) -> Result<(), Rejection> {
    match check_participant(field, sender, access)? {
        Access::ReadWrite => Ok(()),
        Access::Read => Err(Rejection::ReadOnlyAccess { field: field.to_owned(), user: sender.clone() }),
    }
}

/// A user may change (edit, delete) only their own messages, in a conversation they take part in; the app may
/// change any message. `access` is the actor's participation.
pub fn check_author(actor: &Actor, access: Option<Access>, message: &Message) -> Result<(), Rejection> {
    if let Actor::User(user) = actor {
        check_participant("conversationId", user, access)?;
        if message.sender_id.as_ref() != Some(user) {
            return Err(Rejection::NotMessageOwner { user: user.clone(), message: message.id.clone() });
        }
    }
    Ok(())
}

/// What deleting a message that does not exist means: an error for the app, and for a participant a success that
/// changes nothing (seed 004: a user's delete is idempotent).
pub fn check_delete_missing(actor: &Actor, access: Option<Access>, id: &MessageId) -> Result<(), Rejection> {
    match actor {
        Actor::App => Err(Rejection::MessageNotFound(id.clone())),
        Actor::User(user) => check_participant("conversationId", user, access).map(drop),
    }
}

/// Whether an idempotency key recorded at `recorded_at` still names its message at `now` (seed 000: 24 hours).
pub fn idempotency_key_holds(recorded_at: Millis, now: Millis) -> bool {
    now - recorded_at < IDEMPOTENCY_WINDOW_MS
}

/// A message for the import endpoint: sent at `timestamp`, and already read by `read_by`.
#[derive(Clone, Debug)]
pub struct ImportedMessage {
    pub message: NewMessage,
    pub timestamp: Millis,
    pub read_by: Vec<UserId>,
}

/// Imported messages take their place in the conversation by time, and a conversation's order is its `seq`
/// order: so an import goes after every message already there, and never into the future (a later live message
/// would come before it). `timestamps` in the order they were given; `newest` is the conversation's newest
/// message's time. The import sorts them by time itself.
pub fn check_import_times(newest: Option<Millis>, timestamps: &[Millis], now: Millis) -> Result<(), ValidationError> {
    for (index, timestamp) in timestamps.iter().enumerate() {
        let field = format!("[{index}].timestamp");
        if *timestamp < 0 {
            return Err(ValidationError::new(field, "must be Unix milliseconds, not negative"));
        }
        if *timestamp > now {
            return Err(ValidationError::new(field, format!("is in the future ({timestamp} > {now})")));
        }
        if let Some(newest) = newest.filter(|newest| timestamp < newest) {
            return Err(ValidationError::new(
                field,
                format!(
                    "is before the conversation's newest message ({newest}): import history oldest first, \
                     before the conversation has newer messages"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn text_message(kind: MessageType, sender: Option<&str>) -> NewMessage {
        NewMessage {
            kind,
            sender_id: sender.map(|s| UserId::parse(s).unwrap()),
            body: MessageBody::Text("hi".into()),
            links: Links::Allowed,
            custom: Custom::new(),
            referenced_message_id: None,
            idempotency_key: None,
            origin: Origin::Rest,
        }
    }

    #[test]
    fn user_messages_need_a_sender_and_system_messages_refuse_one() {
        assert_eq!(text_message(MessageType::UserMessage, None).validate().unwrap_err().field, "sender");
        assert_eq!(text_message(MessageType::SystemMessage, Some("u")).validate().unwrap_err().field, "sender");
        assert!(text_message(MessageType::UserMessage, Some("u")).validate().is_ok());
        assert!(text_message(MessageType::SystemMessage, None).validate().is_ok());
    }

    #[test]
    fn system_messages_refuse_locations() {
        let mut message = text_message(MessageType::SystemMessage, None);
        message.body = MessageBody::Location(Location::parse(51.4, -3.1).unwrap());
        assert_eq!(message.validate().unwrap_err().field, "location");
    }

    /// A stored message of conversation `c` (seq 1), for tests elsewhere too.
    pub(crate) fn stored(sender: Option<&str>) -> Message {
        Message {
            id: MessageId::parse("m").unwrap(),
            conversation_id: ConversationId::parse("c").unwrap(),
            seq: Seq(1),
            kind: MessageType::UserMessage,
            sender_id: sender.map(|s| UserId::parse(s).unwrap()),
            text: "hi".into(),
            links: Links::Allowed,
            custom: Custom::new(),
            referenced_message_id: None,
            attachment: None,
            location: None,
            origin: Origin::Rest,
            created_at: 0,
            edited_at: None,
            read_by: Vec::new(),
            reactions: Vec::new(),
        }
    }

    #[test]
    fn senders_need_read_write_participation() {
        let alice = UserId::parse("alice").unwrap();
        assert!(check_sender("sender", &alice, Some(Access::ReadWrite)).is_ok());
        assert!(matches!(check_sender("sender", &alice, Some(Access::Read)), Err(Rejection::ReadOnlyAccess { .. })));
        assert!(matches!(check_sender("sender", &alice, None), Err(Rejection::NotAParticipant { .. })));
    }

    #[test]
    fn users_change_only_their_own_messages_and_the_app_changes_any() {
        let alice = Actor::User(UserId::parse("alice").unwrap());
        let message = stored(Some("alice"));
        assert!(check_author(&Actor::App, None, &message).is_ok());
        assert!(check_author(&alice, Some(Access::Read), &message).is_ok());
        assert!(matches!(check_author(&alice, None, &message), Err(Rejection::NotAParticipant { .. })));
        let theirs = stored(Some("bob"));
        assert!(matches!(
            check_author(&alice, Some(Access::ReadWrite), &theirs),
            Err(Rejection::NotMessageOwner { .. })
        ));
        assert!(check_author(&alice, Some(Access::ReadWrite), &stored(None)).is_err(), "nor system messages");
    }

    #[test]
    fn deleting_a_missing_message_fails_for_the_app_and_succeeds_for_a_participant() {
        let id = MessageId::parse("gone").unwrap();
        let alice = Actor::User(UserId::parse("alice").unwrap());
        assert_eq!(check_delete_missing(&Actor::App, None, &id), Err(Rejection::MessageNotFound(id.clone())));
        assert!(check_delete_missing(&alice, Some(Access::Read), &id).is_ok());
        assert!(check_delete_missing(&alice, None, &id).is_err());
    }

    #[test]
    fn an_idempotency_key_holds_for_24_hours() {
        assert!(idempotency_key_holds(1000, 1000 + IDEMPOTENCY_WINDOW_MS - 1));
        assert!(!idempotency_key_holds(1000, 1000 + IDEMPOTENCY_WINDOW_MS));
    }

    #[test]
    fn locations_must_lie_on_the_globe() {
        assert!(Location::parse(90.0, 180.0).is_ok());
        assert!(Location::parse(90.1, 0.0).is_err());
        assert!(Location::parse(0.0, -180.5).is_err());
        assert!(Location::parse(f64::NAN, 0.0).is_err());
    }

    #[test]
    fn imports_go_after_the_newest_message_and_not_into_the_future() {
        assert!(check_import_times(None, &[1, 5, 3], 10).is_ok(), "the import sorts its own messages");
        assert!(check_import_times(Some(5), &[5, 6], 10).is_ok());
        let error = check_import_times(Some(5), &[6, 4], 10).unwrap_err();
        assert_eq!(error.field, "[1].timestamp");
        assert!(check_import_times(None, &[11], 10).unwrap_err().reason.contains("future"));
        assert!(check_import_times(None, &[-1], 10).is_err());
    }
}
