//! From a logged event to the webhook events it makes, with their bodies encoded once for every attempt.
//!
//! The log holds what each event needs as it was at commit (the message, its sender, the deleted conversation),
//! and a read's messages are the log's `messageCreated` events in the range it covered (the store's messages
//! where the log was pruned); only the conversation of a message event is read when the event is delivered, as it
//! is then (`null` once deleted).

use super::Receiver;
use crate::domain::{
    event::{EventKind, Logged, UserEventKind},
    ids::{AppId, ConversationId, Seq, UserId},
    limits::MAX_PARTICIPANTS_FOR_READ_BY,
    message::{Message, MessageType, MessageView},
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
    receiver: &Receiver,
) -> StoreResult<Planned> {
    let wants = |kind: &str| receiver.wants(kind);
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
            UserEventKind::ConversationRead { conversation_id, after, until, participants } => {
                if wants("message.read") && *participants as usize <= MAX_PARTICIPANTS_FOR_READ_BY {
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

/// One chunk of a read's `message.read` events, from the messages after `after`, and where the next chunk starts
/// if there is one. The messages come from the log's `messageCreated` events of the range (as sent, so a message
/// deleted since still counts: it was read), and from the store where the log no longer holds them. Only user
/// messages sent by someone else count.
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
    let end = Seq(until.0.min(after.0.saturating_add(READ_RECEIPTS_PER_CHUNK as i64)));
    let next = (end < until).then_some(end);
    let mut read: Vec<(Message, Option<User>)> = Vec::new();
    let events = store.conversation_events(app, conversation, after, end).await?;
    let whole = events.len() as i64 == end.0 - after.0;
    for event in events {
        if let EventKind::MessageCreated { message } = event.event.kind {
            let MessageView { message, sender, .. } = *message;
            read.push((message, sender));
        }
    }
    if !whole {
        let known: Vec<Seq> = read.iter().map(|(message, _)| message.seq).collect();
        for message in store.messages_between(app, conversation, after, end, READ_RECEIPTS_PER_CHUNK).await? {
            if !known.contains(&message.seq) {
                let sender = match &message.sender_id {
                    Some(id) => store.user(app, id).await?,
                    None => None,
                };
                read.push((message, sender));
            }
        }
        read.sort_by_key(|(message, _)| message.seq);
    }
    read.retain(|(message, _)| {
        message.kind == MessageType::UserMessage && message.sender_id.as_ref().is_some_and(|sender| sender != reader)
    });
    if read.is_empty() {
        return Ok((Vec::new(), next));
    }
    let Some(recipient) = store.user(app, reader).await? else { return Ok((Vec::new(), next)) };
    let view = store.conversation(app, conversation).await?;
    let mut ready = Vec::with_capacity(read.len());
    for (mut message, sender) in read {
        // This event is that the recipient read it.
        if !message.read_by.contains(reader) {
            message.read_by.push(reader.clone());
        }
        let data = MessageReadData {
            conversation: view.as_ref().map(|view| ConversationJson::new(view, app, links)),
            message: MessageJson::new(&message, app, links),
            sender: sender.as_ref().map(UserJson::new),
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
