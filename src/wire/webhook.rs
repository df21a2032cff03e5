//! The JSON of webhook events: the envelope `{id, type, createdAt, data}` and each type's `data`, built from the
//! REST shapes (TalkJS names the events and fills `data` with the REST objects; the TalkJS webhook documentation
//! shows `message.sent`, the rest follow its pattern, see `proto/REST.md`).

use serde::Serialize;

use super::{ConversationJson, Links, MessageJson, UserJson};
use crate::domain::{conversation::ConversationView, ids::AppId, message::Message, user::User, Millis};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, D> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: Millis,
    data: D,
}

/// One webhook event's body, encoded once for every attempt.
pub fn envelope(id: &str, kind: &str, created_at: Millis, data: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(&Envelope { id, kind, created_at, data }).expect("webhook bodies always encode")
}

/// `user.created`, `user.updated`.
#[derive(Serialize)]
pub struct UserData<'a> {
    pub user: UserJson<'a>,
}

/// `message.sent`, `message.updated`, `message.deleted`: the conversation as it is now (`null` once deleted), the
/// message as the event left it, its sender (`null` for system messages).
#[derive(Serialize)]
pub struct MessageData<'a> {
    pub conversation: Option<ConversationJson<'a>>,
    pub message: MessageJson<'a>,
    pub sender: Option<UserJson<'a>>,
}

/// `message.read`: `recipient` is the participant who read it.
#[derive(Serialize)]
pub struct MessageReadData<'a> {
    /// As it is when the event is delivered: `null` once deleted.
    pub conversation: Option<ConversationJson<'a>>,
    pub message: MessageJson<'a>,
    pub sender: Option<UserJson<'a>>,
    pub recipient: UserJson<'a>,
}

/// `conversation.deleted`: the conversation as it was just before.
#[derive(Serialize)]
pub struct ConversationData<'a> {
    pub conversation: ConversationJson<'a>,
}

impl<'a> MessageData<'a> {
    pub fn new(
        conversation: Option<&'a ConversationView>,
        message: &'a Message,
        sender: Option<&'a User>,
        app: &AppId,
        links: &Links,
    ) -> Self {
        Self {
            conversation: conversation.map(|view| ConversationJson::new(view, app, links)),
            message: MessageJson::new(message, app, links),
            sender: sender.map(UserJson::new),
        }
    }
}
