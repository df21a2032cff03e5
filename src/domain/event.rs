//! Events: what happened to a conversation, each stamped with the conversation's sequence number at commit, and
//! what happened to a user, stamped with the user's own. REST and socket writes produce them; the event log keeps
//! both in commit order; the hub fans conversation events out; subscriptions apply them in `seq` order; webhooks
//! follow the log.

use super::{
    conversation::{Access, ConversationView, Notify},
    ids::{ConversationId, MessageId, Seq, UserId},
    message::MessageView,
    reaction::Emoji,
    user::User,
};

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// The conversation was created or its own fields changed.
    ConversationUpdated,
    /// The conversation and everything in it is gone. `conversation` is what it was just before (for webhooks);
    /// events logged before it was recorded have none.
    ConversationDeleted {
        conversation: Option<Box<ConversationView>>,
    },
    ParticipantJoined {
        user_id: UserId,
        access: Access,
        notify: Notify,
    },
    ParticipantUpdated {
        user_id: UserId,
        access: Access,
        notify: Notify,
    },
    ParticipantLeft {
        user_id: UserId,
    },
    MessageCreated {
        message: Box<MessageView>,
    },
    MessageEdited {
        message: Box<MessageView>,
    },
    MessageDeleted {
        message_id: MessageId,
        /// The message as it was (for webhooks); events logged before it was recorded have none.
        message: Option<Box<MessageView>>,
    },
    AllMessagesDeleted,
    /// A message came in through the import endpoint: it takes this `seq`, but, as in TalkJS, open windows do not
    /// show it live (a new snapshot does).
    MessageImported {
        message_id: MessageId,
    },
    ReactionAdded {
        message_id: MessageId,
        emoji: Emoji,
        user_id: UserId,
    },
    ReactionRemoved {
        message_id: MessageId,
        emoji: Emoji,
        user_id: UserId,
    },
}

/// What happened to one user, numbered by the user's own sequence (`seq` starts at 1 per user). User streams are
/// logged beside conversation streams; nothing subscribes to them over the socket yet.
#[derive(Clone, Debug, PartialEq)]
pub struct UserEvent {
    pub user_id: UserId,
    pub seq: Seq,
    pub kind: UserEventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UserEventKind {
    Created {
        user: Box<User>,
    },
    /// A change that left the user different (a PUT that changes nothing logs nothing).
    Updated {
        user: Box<User>,
    },
    /// The user's read marker in a conversation moved from `after` to `until`: the messages in between that
    /// others sent are now read by this user.
    ConversationRead {
        conversation_id: ConversationId,
        after: Seq,
        until: Seq,
        /// How many took part in the conversation then (TalkJS sends `message.read` only up to 300).
        participants: u32,
    },
}

/// Anything the event log holds: an event of a conversation's stream or of a user's.
#[derive(Clone, Debug, PartialEq)]
pub enum Logged {
    Conversation(Event),
    User(UserEvent),
}

impl Logged {
    pub fn conversation(&self) -> Option<&Event> {
        match self {
            Logged::Conversation(event) => Some(event),
            Logged::User(_) => None,
        }
    }
}
