//! From a logged event to the webhook events it makes, with their bodies encoded once for every attempt.
//!
//! The log holds what each event needs as it was at commit (the message, its sender, the deleted conversation);
//! what it does not hold is read when the event is delivered: the conversation of a message event as it is then,
//! and for a read, the messages it covered.

use std::collections::HashMap;

use crate::domain::{
    event::{EventKind, Logged, UserEventKind},
    ids::{AppId, ConversationId, Seq, UserId},
    limits::MAX_PARTICIPANTS_FOR_READ_BY,
    message::MessageType,
    user::User,
    Millis,
};
use crate::store::{LoggedEvent, Store, StoreResult};
use crate::wire::{
    webhook::{self, ConversationData, MessageData, MessageReadData, UserData},
    ConversationJson, Links, MessageJson, UserJson,
};

/// Messages a read's receipts are built for at a time.
const READ_RECEIPTS_PER_CHUNK: usize = 100;

/// A webhook event ready to send: `id` is the same on every attempt, so receivers can drop duplicates.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub id: String,
    pub kind: &'static str,
    pub body: Vec<u8>,
}

/// What a logged event makes.
pub enum Planned {
    Ready(Vec<Outgoing>),
    /// A read: `message.read` for each message in `after < seq <= until` that someone else sent, built a chunk at
    /// a time (`read_receipts`), since one read can cover a whole history.
    Reads {
        reader: UserId,
        conversation: ConversationId,
        after: Seq,
        until: Seq,
    },
}

/// The webhook events of one logged event, of the types `wants` accepts.
pub async fn plan(
    store: &dyn Store,
    app: &AppId,
    links: &Links,
    logged: &LoggedEvent<Logged>,
    wants: &(dyn Fn(&str) -> bool + Sync),
) -> StoreResult<Planned> {
    let id = format!("evt_{}", logged.position.0);
    let at = logged.committed_at;
    let mut ready = Vec::new();
    match &logged.event {
        Logged::Conversation(event) => {
            let (kind, view) = match &event.kind {
                EventKind::MessageCreated { message } => ("message.sent", &**message),
                EventKind::MessageEdited { message } => ("message.updated", &**message),
                EventKind::MessageDeleted { message: Some(message), .. } => ("message.deleted", &**message),
                EventKind::ConversationDeleted { conversation: Some(conversation) } => {
                    if wants("conversation.deleted") {
                        let data = ConversationData { conversation: ConversationJson::new(conversation, app, links) };
                        ready.push(outgoing(id, "conversation.deleted", at, &data));
                    }
                    return Ok(Planned::Ready(ready));
                }
                _ => return Ok(Planned::Ready(ready)),
            };
            if wants(kind) {
                let conversation = store.conversation(app, &event.conversation_id).await?;
                let data = MessageData::new(conversation.as_ref(), &view.message, view.sender.as_ref(), app, links);
                ready.push(outgoing(id, kind, at, &data));
            }
        }
        Logged::User(event) => match &event.kind {
            UserEventKind::Created { user } | UserEventKind::Updated { user } => {
                let kind =
                    if matches!(event.kind, UserEventKind::Created { .. }) { "user.created" } else { "user.updated" };
                if wants(kind) {
                    ready.push(outgoing(id, kind, at, &UserData { user: UserJson::new(user) }));
                }
            }
            UserEventKind::ConversationRead { conversation_id, after, until } => {
                if wants("message.read") {
                    return Ok(Planned::Reads {
                        reader: event.user_id.clone(),
                        conversation: conversation_id.clone(),
                        after: *after,
                        until: *until,
                    });
                }
            }
        },
    }
    Ok(Planned::Ready(ready))
}

/// One chunk of a read's `message.read` events, from the messages after `after`; and where the next chunk starts,
/// if there is one. None for a conversation gone or with more than 300 participants (TalkJS sends `message.read`
/// only up to that size), or a reader who no longer exists. Only user messages sent by someone else count.
#[allow(clippy::too_many_arguments, reason = "the read and where its chunk starts")]
pub async fn read_receipts(
    store: &dyn Store,
    app: &AppId,
    links: &Links,
    logged: &LoggedEvent<Logged>,
    reader: &UserId,
    conversation: &ConversationId,
    after: Seq,
    until: Seq,
) -> StoreResult<(Vec<Outgoing>, Option<Seq>)> {
    let Some(view) = store.conversation(app, conversation).await? else { return Ok((Vec::new(), None)) };
    if view.participants.len() > MAX_PARTICIPANTS_FOR_READ_BY {
        return Ok((Vec::new(), None));
    }
    let Some(recipient) = store.user(app, reader).await? else { return Ok((Vec::new(), None)) };
    let messages = store.messages_between(app, conversation, after, until, READ_RECEIPTS_PER_CHUNK).await?;
    let next = (messages.len() == READ_RECEIPTS_PER_CHUNK).then(|| messages.last().map(|m| m.seq)).flatten();
    let mut senders: HashMap<UserId, Option<User>> = HashMap::new();
    let mut ready = Vec::new();
    for message in &messages {
        let Some(sender_id) = message.sender_id.as_ref().filter(|sender| *sender != reader) else { continue };
        if message.kind != MessageType::UserMessage {
            continue;
        }
        if !senders.contains_key(sender_id) {
            senders.insert(sender_id.clone(), store.user(app, sender_id).await?);
        }
        let data = MessageReadData {
            conversation: ConversationJson::new(&view, app, links),
            message: MessageJson::new(message, app, links),
            sender: senders[sender_id].as_ref().map(UserJson::new),
            recipient: UserJson::new(&recipient),
        };
        let id = format!("evt_{}_{}", logged.position.0, message.id);
        ready.push(outgoing(id, "message.read", logged.committed_at, &data));
    }
    Ok((ready, next))
}

fn outgoing(id: String, kind: &'static str, at: Millis, data: &impl serde::Serialize) -> Outgoing {
    let body = webhook::envelope(&id, kind, at, data);
    Outgoing { id, kind, body }
}
