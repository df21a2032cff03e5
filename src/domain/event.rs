//! Events: what happened to a conversation, each stamped with the conversation's sequence number at commit.
//! REST and socket writes produce them; the hub fans them out; subscriptions apply them in `seq` order.

use super::{
    conversation::{Access, Notify},
    ids::{ConversationId, MessageId, Seq, UserId},
    message::MessageView,
    reaction::Emoji,
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
    /// The conversation and everything in it is gone.
    ConversationDeleted,
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
    },
    AllMessagesDeleted,
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
