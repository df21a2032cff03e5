//! Write transactions. Each function runs as one of the writer's jobs, and may run twice (see `writer`): it checks
//! the rules against the stored data, writes, bumps the conversation's sequence number once per event, and returns
//! the events.

use crate::domain::{
    content::Links,
    conversation::{Access, ConversationPatch, Notify, ParticipantSettings},
    event::{Event, EventKind, UserEvent, UserEventKind},
    ids::{random_base62, AppId, ConversationId, MessageId, Seq, UserId},
    message::{
        check_author, check_delete_missing, check_import_times, check_sender, idempotency_key_holds, Attachment,
        ImportedMessage, Message, MessageBody, MessageEdit, MessageType, MessageView, NewMessage,
    },
    reaction::{check_add, check_reactor, Emoji},
    user::UserPatch,
    Actor, Millis, Rejection, ValidationError,
};
use crate::store::{Appended, FileReceipt, NewFile, StoreError, StoreResult};

use super::{args, reads, to_json, Db};

/// Takes the conversation's next sequence number. The counter row outlives the conversation.
fn next_seq(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<Seq> {
    let seq = db.one_written(
        "INSERT INTO sequences (app_id, conversation_id, last_seq) VALUES (?1, ?2, 1) \
         ON CONFLICT (app_id, conversation_id) DO UPDATE SET last_seq = sequences.last_seq + 1",
        "last_seq",
        "SELECT last_seq FROM sequences WHERE app_id = ?1 AND conversation_id = ?2",
        args![app.as_str(), conversation.as_str()],
        |row| row.i64(0),
    )?;
    Ok(Seq(seq))
}

/// The `seq` of a new message, and how many messages the conversation has had with it (`message_count`, which
/// unread counts are kept against), in the one write that numbers every event.
fn next_message_seq(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<(Seq, i64)> {
    db.one_written(
        "INSERT INTO sequences (app_id, conversation_id, last_seq, message_count) VALUES (?1, ?2, 1, 1) \
         ON CONFLICT (app_id, conversation_id) DO UPDATE SET last_seq = sequences.last_seq + 1, \
         message_count = sequences.message_count + 1",
        "last_seq, message_count",
        "SELECT last_seq, message_count FROM sequences WHERE app_id = ?1 AND conversation_id = ?2",
        args![app.as_str(), conversation.as_str()],
        |row| Ok((Seq(row.i64(0)?), row.i64(1)?)),
    )
}

/// The conversation's `message_count` now, as SQL over `?1` (app) and `?2` (conversation).
const MESSAGE_COUNT: &str =
    "COALESCE((SELECT message_count FROM sequences WHERE app_id = ?1 AND conversation_id = ?2), 0)";

fn event(db: &dyn Db, app: &AppId, conversation: &ConversationId, kind: EventKind) -> StoreResult<Event> {
    Ok(Event { conversation_id: conversation.clone(), seq: next_seq(db, app, conversation)?, kind })
}

/// An event of the user's own stream, with the user's next sequence number.
fn user_event(db: &dyn Db, app: &AppId, user: &UserId, kind: UserEventKind) -> StoreResult<UserEvent> {
    let seq = db.one_written(
        "INSERT INTO user_sequences (app_id, user_id, last_seq) VALUES (?1, ?2, 1) \
         ON CONFLICT (app_id, user_id) DO UPDATE SET last_seq = user_sequences.last_seq + 1",
        "last_seq",
        "SELECT last_seq FROM user_sequences WHERE app_id = ?1 AND user_id = ?2",
        args![app.as_str(), user.as_str()],
        |row| row.i64(0),
    )?;
    Ok(UserEvent { user_id: user.clone(), seq: Seq(seq), kind })
}

/// Creates and patches users; logs `Created` for a new user and `Updated` for one the patch changed.
pub fn upsert_users(
    db: &dyn Db,
    app: &AppId,
    users: Vec<(UserId, UserPatch)>,
    now: Millis,
) -> StoreResult<Vec<UserEvent>> {
    let batch = users.len() > 1;
    let mut errors = Vec::new();
    let mut ready = Vec::with_capacity(users.len());
    for (id, patch) in users {
        match reads::user(db, app, &id)? {
            Some(before) => {
                let mut user = before.clone();
                patch.apply(&mut user);
                if user != before {
                    ready.push((user, false));
                }
            }
            None => match patch.create(id.clone(), now) {
                Ok(user) => ready.push((user, true)),
                Err(error) if batch => errors.push(error.at(&format!("[\"{id}\"]"))),
                Err(error) => errors.push(error),
            },
        }
    }
    if !errors.is_empty() {
        return Err(if batch { Rejection::InvalidBatch(errors) } else { Rejection::Invalid(errors.remove(0)) }.into());
    }
    let mut events = Vec::with_capacity(ready.len());
    for (user, created) in ready {
        db.execute(
            "INSERT INTO users (app_id, id, name, email, phone, photo_url, locale, role, welcome_message, custom, \
             push_tokens, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (app_id, id) DO UPDATE SET name = excluded.name, email = excluded.email, \
             phone = excluded.phone, photo_url = excluded.photo_url, locale = excluded.locale, role = excluded.role, \
             welcome_message = excluded.welcome_message, custom = excluded.custom, \
             push_tokens = excluded.push_tokens, created_at = excluded.created_at",
            args![
                app.as_str(),
                user.id.as_str(),
                user.name.as_str(),
                user.email.as_ref().map(to_json),
                user.phone.as_ref().map(to_json),
                user.photo_url.as_deref(),
                user.locale.as_deref(),
                user.role.as_deref(),
                user.welcome_message.as_deref(),
                to_json(&user.custom),
                user.push_tokens.as_ref().map(to_json),
                user.created_at,
            ],
        )?;
        let id = user.id.clone();
        let kind = if created {
            UserEventKind::Created { user: Box::new(user) }
        } else {
            UserEventKind::Updated { user: Box::new(user) }
        };
        events.push(user_event(db, app, &id, kind)?);
    }
    Ok(events)
}

pub fn upsert_conversation(
    db: &dyn Db,
    app: &AppId,
    id: &ConversationId,
    patch: ConversationPatch,
    now: Millis,
) -> StoreResult<Vec<Event>> {
    let missing: Vec<ValidationError> = patch
        .participants
        .iter()
        .filter_map(|user| match reads::user(db, app, user) {
            Ok(Some(_)) => None,
            Ok(None) => Some(Ok(ValidationError::new("participants", format!("user \"{user}\" does not exist")))),
            Err(error) => Some(Err(error)),
        })
        .collect::<StoreResult<_>>()?;
    if !missing.is_empty() {
        return Err(Rejection::InvalidBatch(missing).into());
    }
    let mut events = Vec::new();
    let existing = reads::conversation(db, app, id)?;
    let created = existing.is_none();
    let changes_fields = patch.changes_fields();
    let participants = patch.participants.clone();
    let mut conversation = existing.unwrap_or_else(|| crate::domain::conversation::Conversation {
        id: id.clone(),
        subject: None,
        photo_url: None,
        welcome_messages: None,
        custom: Default::default(),
        created_at: now,
        last_message_at: None,
        last_seq: Seq(0),
    });
    patch.apply(&mut conversation);
    if created || changes_fields {
        db.execute(
            "INSERT INTO conversations (app_id, id, subject, photo_url, welcome_messages, custom, created_at, \
                 last_message_at, last_activity_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?7) \
                 ON CONFLICT (app_id, id) DO UPDATE SET subject = ?3, photo_url = ?4, welcome_messages = ?5, \
                 custom = ?6",
            args![
                app.as_str(),
                id.as_str(),
                conversation.subject,
                conversation.photo_url,
                conversation.welcome_messages.as_ref().map(to_json),
                to_json(&conversation.custom),
                conversation.created_at,
            ],
        )?;
        events.push(event(db, app, id, EventKind::ConversationUpdated)?);
    }
    for user in participants {
        if reads::membership(db, app, id, &user)?.is_none() {
            let settings = ParticipantSettings::default();
            events.push(join(db, app, id, &user, settings, now)?);
        }
    }
    Ok(events)
}

fn join(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    settings: ParticipantSettings,
    now: Millis,
) -> StoreResult<Event> {
    let access = settings.access.unwrap_or(Access::ReadWrite);
    let notify = settings.notify.unwrap_or(Notify::All);
    // Having read nothing, every message but one's own (from an earlier membership) is unread: counted once here.
    db.execute(
        &format!(
            "INSERT INTO participants (app_id, conversation_id, user_id, access, notify, joined_at, read_until_seq, \
             marked_unread, unread_base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, {MESSAGE_COUNT} - \
             (SELECT COUNT(*) FROM messages WHERE app_id = ?1 AND conversation_id = ?2 \
             AND (sender_id IS NULL OR sender_id != ?3)))"
        ),
        args![app.as_str(), conversation.as_str(), user.as_str(), access.as_str(), notify.as_str(), now],
    )?;
    event(db, app, conversation, EventKind::ParticipantJoined { user_id: user.clone(), access, notify })
}

/// Deletes every message of a conversation, with their files and reactions.
fn delete_messages_of(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<()> {
    let args = args![app.as_str(), conversation.as_str()];
    db.execute(
        "DELETE FROM files WHERE app_id = ?1 AND message_id IN \
         (SELECT id FROM messages WHERE app_id = ?1 AND conversation_id = ?2)",
        args,
    )?;
    for table in ["reactions", "messages"] {
        db.execute(&format!("DELETE FROM {table} WHERE app_id = ?1 AND conversation_id = ?2"), args)?;
    }
    // Nothing left to be unread.
    db.execute(
        &format!("UPDATE participants SET unread_base = {MESSAGE_COUNT} WHERE app_id = ?1 AND conversation_id = ?2"),
        args,
    )?;
    Ok(())
}

pub fn delete_conversation(db: &dyn Db, app: &AppId, id: &ConversationId) -> StoreResult<Event> {
    // What it was, for the log (webhooks tell what was deleted).
    let gone = reads::conversation_view(db, app, reads::require_conversation(db, app, id)?)?;
    delete_messages_of(db, app, id)?;
    let args = args![app.as_str(), id.as_str()];
    for table in ["participants", "idempotency_keys"] {
        db.execute(&format!("DELETE FROM {table} WHERE app_id = ?1 AND conversation_id = ?2"), args)?;
    }
    db.execute("DELETE FROM conversations WHERE app_id = ?1 AND id = ?2", args)?;
    event(db, app, id, EventKind::ConversationDeleted { conversation: Some(Box::new(gone)) })
}

fn require_user(db: &dyn Db, app: &AppId, user: &UserId) -> StoreResult<()> {
    match reads::user(db, app, user)? {
        Some(_) => Ok(()),
        None => Err(Rejection::UserNotFound(user.clone()).into()),
    }
}

pub fn put_participant(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    settings: ParticipantSettings,
    now: Millis,
) -> StoreResult<Option<Event>> {
    reads::require_conversation_exists(db, app, conversation)?;
    require_user(db, app, user)?;
    match reads::membership(db, app, conversation, user)? {
        None => Ok(Some(join(db, app, conversation, user, settings, now)?)),
        Some(current) => {
            // PUT overwrites: what is not given goes back to the default.
            let access = settings.access.unwrap_or(Access::ReadWrite);
            let notify = settings.notify.unwrap_or(Notify::All);
            update_participant(db, app, conversation, user, current, (access, notify))
        }
    }
}

pub fn patch_participant(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    settings: ParticipantSettings,
) -> StoreResult<Option<Event>> {
    reads::require_conversation_exists(db, app, conversation)?;
    let current = reads::membership(db, app, conversation, user)?
        .ok_or_else(|| Rejection::ParticipantNotFound { conversation: conversation.clone(), user: user.clone() })?;
    let access = settings.access.unwrap_or(current.0);
    let notify = settings.notify.unwrap_or(current.1);
    update_participant(db, app, conversation, user, current, (access, notify))
}

fn update_participant(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    before: (Access, Notify),
    (access, notify): (Access, Notify),
) -> StoreResult<Option<Event>> {
    if before == (access, notify) {
        return Ok(None);
    }
    db.execute(
        "UPDATE participants SET access = ?4, notify = ?5 \
             WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
        args![app.as_str(), conversation.as_str(), user.as_str(), access.as_str(), notify.as_str()],
    )?;
    let kind = EventKind::ParticipantUpdated { user_id: user.clone(), access, notify };
    Ok(Some(event(db, app, conversation, kind)?))
}

pub fn remove_participant(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<Event>> {
    reads::require_conversation_exists(db, app, conversation)?;
    let removed = db.execute(
        "DELETE FROM participants WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
        args![app.as_str(), conversation.as_str(), user.as_str()],
    )?;
    if removed == 0 {
        return Ok(None);
    }
    Ok(Some(event(db, app, conversation, EventKind::ParticipantLeft { user_id: user.clone() })?))
}

pub fn set_read_state(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    is_unread: Option<bool>,
) -> StoreResult<Option<UserEvent>> {
    reads::require_conversation_exists(db, app, conversation)?;
    require_user(db, app, user)?;
    if reads::membership(db, app, conversation, user)?.is_none() {
        return Err(Rejection::ParticipantNotFound { conversation: conversation.clone(), user: user.clone() }.into());
    }
    let args = args![app.as_str(), conversation.as_str(), user.as_str()];
    match is_unread {
        None => {}
        Some(true) => {
            db.execute(
                "UPDATE participants SET marked_unread = 1 WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
                args,
            )?;
        }
        Some(false) => {
            let (after, until, participants) = db.one(
                "SELECT read_until_seq, (SELECT COALESCE(MAX(seq), 0) FROM messages \
                 WHERE app_id = ?1 AND conversation_id = ?2), (SELECT COUNT(*) FROM participants \
                 WHERE app_id = ?1 AND conversation_id = ?2) FROM participants \
                 WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
                args,
                |row| Ok((row.i64(0)?, row.i64(1)?, row.i64(2)?)),
            )?;
            db.execute(
                &format!(
                    "UPDATE participants SET marked_unread = 0, read_until_seq = ?4, unread_base = {MESSAGE_COUNT} \
                     WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3"
                ),
                args![app.as_str(), conversation.as_str(), user.as_str(), until.max(after)],
            )?;
            if until > after {
                let kind = UserEventKind::ConversationRead {
                    conversation_id: conversation.clone(),
                    after: Seq(after),
                    until: Seq(until),
                    participants: participants.clamp(0, u32::MAX as i64) as u32,
                };
                return Ok(Some(user_event(db, app, user, kind)?));
            }
        }
    }
    Ok(None)
}

/// Refreshes the conversation's last-message time after messages came or went.
fn touch_last_message(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<()> {
    db.execute(
        "UPDATE conversations SET last_message_at = \
             (SELECT created_at FROM messages WHERE app_id = ?1 AND conversation_id = ?2 ORDER BY seq DESC LIMIT 1), \
             last_activity_at = COALESCE((SELECT created_at FROM messages WHERE app_id = ?1 AND conversation_id = ?2 \
             ORDER BY seq DESC LIMIT 1), created_at) WHERE app_id = ?1 AND id = ?2",
        args![app.as_str(), conversation.as_str()],
    )?;
    Ok(())
}

pub fn append_messages(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    messages: Vec<NewMessage>,
    now: Millis,
) -> StoreResult<Appended> {
    reads::require_conversation_exists(db, app, conversation)?;
    let mut appended = Appended { ids: Vec::with_capacity(messages.len()), events: Vec::new() };
    for (index, message) in messages.into_iter().enumerate() {
        let place = format!("[{index}]");
        if let Some(key) = &message.idempotency_key {
            let known = db.row(
                "SELECT message_id, created_at FROM idempotency_keys \
                 WHERE app_id = ?1 AND conversation_id = ?2 AND key = ?3",
                args![app.as_str(), conversation.as_str(), key],
                |row| Ok((row.string(0)?, row.i64(1)?)),
            )?;
            if let Some((id, created_at)) = known {
                if idempotency_key_holds(created_at, now) {
                    appended.ids.push(MessageId::from_trusted(id));
                    continue;
                }
            }
        }
        let (id, event) = append_one(db, app, conversation, message, now, &place)?;
        appended.ids.push(id);
        appended.events.push(event);
    }
    if !appended.events.is_empty() {
        // The messages just appended are the newest: no need to search for the last one.
        db.execute(
            "UPDATE conversations SET last_message_at = ?3, last_activity_at = ?3 WHERE app_id = ?1 AND id = ?2",
            args![app.as_str(), conversation.as_str(), now],
        )?;
    }
    Ok(appended)
}

pub fn import_messages(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    items: Vec<ImportedMessage>,
    now: Millis,
) -> StoreResult<Appended> {
    let existing = reads::require_conversation(db, app, conversation)?;
    let timestamps: Vec<Millis> = items.iter().map(|item| item.timestamp).collect();
    check_import_times(existing.last_message_at, &timestamps, now).map_err(Rejection::Invalid)?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&index| timestamps[index]);
    let mut items: Vec<Option<ImportedMessage>> = items.into_iter().map(Some).collect();
    let mut ids = vec![None; items.len()];
    let mut events = Vec::with_capacity(items.len());
    for index in order {
        let item = items[index].take().expect("each item is imported once");
        let place = format!("[{index}]");
        let (id, created) = append_one(db, app, conversation, item.message, item.timestamp, &place)?;
        for reader in &item.read_by {
            if access_of(db, app, conversation, reader)?.is_none() {
                return Err(Rejection::Invalid(ValidationError::new(
                    format!("{place}.readBy"),
                    format!("user \"{reader}\" is not a participant"),
                ))
                .into());
            }
            // One read marker per participant: having read this message means having read what came before. It is
            // the newest message, so nothing is unread after it.
            db.execute(
                &format!(
                    "UPDATE participants SET read_until_seq = ?4, unread_base = {MESSAGE_COUNT} \
                     WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3 AND read_until_seq < ?4"
                ),
                args![app.as_str(), conversation.as_str(), reader.as_str(), created.seq.0],
            )?;
        }
        events.push(Event {
            conversation_id: conversation.clone(),
            seq: created.seq,
            kind: EventKind::MessageImported { message_id: id.clone() },
        });
        ids[index] = Some(id);
    }
    if let Some(newest) = timestamps.iter().max() {
        db.execute(
            "UPDATE conversations SET last_message_at = ?3, \
             last_activity_at = CASE WHEN last_activity_at < ?3 THEN ?3 ELSE last_activity_at END \
             WHERE app_id = ?1 AND id = ?2",
            args![app.as_str(), conversation.as_str(), *newest],
        )?;
    }
    Ok(Appended { ids: ids.into_iter().map(|id| id.expect("every item has an id")).collect(), events })
}

fn append_one(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    message: NewMessage,
    now: Millis,
    place: &str,
) -> StoreResult<(MessageId, Event)> {
    let sender = match &message.sender_id {
        Some(sender) => reads::user(db, app, sender)?,
        None => None,
    };
    if let Some(sender) = &message.sender_id {
        check_sender(&format!("{place}.sender"), sender, access_of(db, app, conversation, sender)?)?;
    }
    // The reply target must exist; read once, it also expands the new message's snapshot.
    let referenced = match &message.referenced_message_id {
        Some(referenced) => Some(reads::referenced_view(db, app, conversation, referenced)?.ok_or_else(|| {
            Rejection::Invalid(ValidationError::new(
                format!("{place}.referencedMessageId"),
                format!("no message \"{referenced}\" in this conversation"),
            ))
        })?),
        None => None,
    };
    let id = MessageId::generate();
    let (text, attachment, location) = match &message.body {
        MessageBody::Text(text) => (text.as_str(), None, None),
        MessageBody::Location(location) => ("", None, Some(*location)),
        MessageBody::Attachment { token } => {
            let file = db.row(
                "SELECT id, filename, size FROM files WHERE app_id = ?1 AND token = ?2 AND message_id IS NULL",
                args![app.as_str(), token],
                |row| Ok(Attachment { file_id: row.string(0)?, filename: row.string(1)?, size: row.i64(2)? as u64 }),
            )?;
            let file = file.ok_or_else(|| {
                Rejection::Invalid(ValidationError::new(
                    format!("{place}.attachmentToken"),
                    "is unknown or already used by another message",
                ))
            })?;
            db.execute(
                "UPDATE files SET message_id = ?3 WHERE app_id = ?1 AND id = ?2",
                args![app.as_str(), &file.file_id, id.as_str()],
            )?;
            ("", Some(file), None)
        }
    };
    let file_id = attachment.as_ref().map(|file| file.file_id.as_str());
    let (seq, message_count) = next_message_seq(db, app, conversation)?;
    db.execute(
        "INSERT INTO messages (app_id, conversation_id, id, seq, type, sender_id, text, custom, \
             referenced_message_id, file_id, latitude, longitude, origin, created_at, edited_at, links_allowed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, NULL, ?15)",
        args![
            app.as_str(),
            conversation.as_str(),
            id.as_str(),
            seq.0,
            message.kind.as_str(),
            message.sender_id.as_ref().map(UserId::as_str),
            text,
            to_json(&message.custom),
            message.referenced_message_id.as_ref().map(MessageId::as_str),
            file_id,
            location.map(|l| l.latitude),
            location.map(|l| l.longitude),
            message.origin.as_str(),
            now,
            message.links == Links::Allowed,
        ],
    )?;
    if let Some(key) = &message.idempotency_key {
        db.execute(
            "INSERT INTO idempotency_keys (app_id, conversation_id, key, message_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (app_id, conversation_id, key) \
                 DO UPDATE SET message_id = excluded.message_id, created_at = excluded.created_at",
            args![app.as_str(), conversation.as_str(), key, id.as_str(), now],
        )?;
    }
    if let (MessageType::UserMessage, Some(sender)) = (message.kind, &message.sender_id) {
        // Writing in a conversation means having read it up to one's own message.
        db.execute(
            "UPDATE participants SET read_until_seq = ?4, marked_unread = 0, unread_base = ?5 \
                 WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
            args![app.as_str(), conversation.as_str(), sender.as_str(), seq.0, message_count],
        )?;
    }
    // Built from what this transaction knows rather than read back: a new message has no reactions, and nobody
    // has read past it yet.
    let stored = Message {
        id: id.clone(),
        conversation_id: conversation.clone(),
        seq,
        kind: message.kind,
        sender_id: message.sender_id,
        text: text.to_owned(),
        links: message.links,
        custom: message.custom,
        referenced_message_id: message.referenced_message_id,
        attachment,
        location,
        origin: message.origin,
        created_at: now,
        edited_at: None,
        read_by: Vec::new(),
        reactions: Vec::new(),
    };
    let stored = MessageView { message: stored, sender, referenced };
    let event = Event {
        conversation_id: conversation.clone(),
        seq,
        kind: EventKind::MessageCreated { message: Box::new(stored) },
    };
    Ok((id, event))
}

fn require_message(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<crate::domain::message::Message> {
    reads::require_conversation_exists(db, app, conversation)?;
    reads::message(db, app, conversation, id)?.ok_or_else(|| Rejection::MessageNotFound(id.clone()).into())
}

/// The user's access in the conversation, `None` when they do not take part: the fact the rules decide on.
fn access_of(db: &dyn Db, app: &AppId, conversation: &ConversationId, user: &UserId) -> StoreResult<Option<Access>> {
    Ok(reads::membership(db, app, conversation, user)?.map(|(access, _)| access))
}

fn actor_access(db: &dyn Db, app: &AppId, conversation: &ConversationId, actor: &Actor) -> StoreResult<Option<Access>> {
    match actor {
        Actor::App => Ok(None),
        Actor::User(user) => access_of(db, app, conversation, user),
    }
}

pub fn edit_message(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
    edit: MessageEdit,
    actor: &Actor,
    now: Millis,
) -> StoreResult<Event> {
    let mut message = require_message(db, app, conversation, id)?;
    check_author(actor, actor_access(db, app, conversation, actor)?, &message)?;
    let mut removed_file = None;
    if let Some((text, links)) = edit.text {
        message.text = text;
        message.links = links;
        // Text replaces an attachment or a location: the message becomes a text message.
        removed_file = message.attachment.take();
        message.location = None;
    }
    if edit.clear_custom {
        message.custom.clear();
    }
    if let Some(custom) = edit.custom {
        crate::domain::conversation::merge_custom(&mut message.custom, custom);
    }
    if edit.mark_edited {
        message.edited_at = Some(now);
    }
    if let Some(file) = removed_file {
        db.execute("DELETE FROM files WHERE app_id = ?1 AND id = ?2", args![app.as_str(), file.file_id])?;
    }
    db.execute(
        "UPDATE messages SET text = ?4, custom = ?5, edited_at = ?6, links_allowed = ?7, file_id = ?8, \
             latitude = ?9, longitude = ?10 WHERE app_id = ?1 AND conversation_id = ?2 AND id = ?3",
        args![
            app.as_str(),
            conversation.as_str(),
            id.as_str(),
            &message.text,
            to_json(&message.custom),
            message.edited_at,
            message.links == Links::Allowed,
            message.attachment.as_ref().map(|file| file.file_id.as_str()),
            message.location.map(|location| location.latitude),
            message.location.map(|location| location.longitude),
        ],
    )?;
    let view = reads::message_view(db, app, message)?;
    event(db, app, conversation, EventKind::MessageEdited { message: Box::new(view) })
}

/// Deletes a message. The app gets `MessageNotFound` for a missing message; a user's delete of a missing message
/// succeeds with no event (seed 004).
pub fn delete_message(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
    actor: &Actor,
) -> StoreResult<Option<Event>> {
    let access = actor_access(db, app, conversation, actor)?;
    let message = match require_message(db, app, conversation, id) {
        Ok(message) => message,
        Err(StoreError::Rejected(Rejection::MessageNotFound(_))) => {
            check_delete_missing(actor, access, id)?;
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    check_author(actor, access, &message)?;
    let (seq, sender) = (message.seq, message.sender_id.clone());
    let gone = reads::message_view(db, app, message)?;
    let args = args![app.as_str(), conversation.as_str(), id.as_str()];
    db.execute("DELETE FROM files WHERE app_id = ?1 AND message_id = ?2", args![app.as_str(), id.as_str()])?;
    db.execute("DELETE FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 AND message_id = ?3", args)?;
    db.execute("DELETE FROM messages WHERE app_id = ?1 AND conversation_id = ?2 AND id = ?3", args)?;
    // One unread message fewer for whoever had not read it (the sender never counts their own).
    let unread_by = "UPDATE participants SET unread_base = unread_base + 1 \
                     WHERE app_id = ?1 AND conversation_id = ?2 AND read_until_seq < ?3";
    match &sender {
        Some(sender) => db.execute(
            &format!("{unread_by} AND user_id != ?4"),
            args![app.as_str(), conversation.as_str(), seq.0, sender.as_str()],
        )?,
        None => db.execute(unread_by, args![app.as_str(), conversation.as_str(), seq.0])?,
    };
    touch_last_message(db, app, conversation)?;
    Ok(Some(event(
        db,
        app,
        conversation,
        EventKind::MessageDeleted { message_id: id.clone(), message: Some(Box::new(gone)) },
    )?))
}

pub fn delete_all_messages(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<Event> {
    reads::require_conversation_exists(db, app, conversation)?;
    delete_messages_of(db, app, conversation)?;
    touch_last_message(db, app, conversation)?;
    event(db, app, conversation, EventKind::AllMessagesDeleted)
}

/// Reactions are made by participants; the reacting user must exist and take part in the conversation.
fn require_reactor(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    message: &MessageId,
    user: &UserId,
) -> StoreResult<()> {
    require_message(db, app, conversation, message)?;
    require_user(db, app, user)?;
    Ok(check_reactor(user, access_of(db, app, conversation, user)?)?)
}

pub fn add_reaction(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    message: &MessageId,
    emoji: &Emoji,
    user: &UserId,
    now: Millis,
) -> StoreResult<Option<Event>> {
    require_reactor(db, app, conversation, message, user)?;
    let (already, emoji_present, n_distinct) = db.one(
        "SELECT \
             EXISTS (SELECT 1 FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 AND message_id = ?3 \
                     AND emoji = ?4 AND user_id = ?5), \
             EXISTS (SELECT 1 FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 AND message_id = ?3 \
                     AND emoji = ?4), \
             (SELECT COUNT(DISTINCT emoji) FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 \
                     AND message_id = ?3)",
        args![app.as_str(), conversation.as_str(), message.as_str(), emoji.as_str(), user.as_str()],
        |row| Ok((row.bool(0)?, row.bool(1)?, row.i64(2)?)),
    )?;
    if !check_add(already, emoji_present, n_distinct as usize)? {
        return Ok(None);
    }
    db.execute(
        "INSERT INTO reactions (app_id, conversation_id, message_id, emoji, user_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![app.as_str(), conversation.as_str(), message.as_str(), emoji.as_str(), user.as_str(), now],
    )?;
    let kind = EventKind::ReactionAdded { message_id: message.clone(), emoji: emoji.clone(), user_id: user.clone() };
    Ok(Some(event(db, app, conversation, kind)?))
}

pub fn remove_reaction(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    message: &MessageId,
    emoji: &Emoji,
    user: &UserId,
) -> StoreResult<Option<Event>> {
    require_reactor(db, app, conversation, message, user)?;
    let removed = db.execute(
        "DELETE FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 AND message_id = ?3 \
             AND emoji = ?4 AND user_id = ?5",
        args![app.as_str(), conversation.as_str(), message.as_str(), emoji.as_str(), user.as_str()],
    )?;
    if removed == 0 {
        return Ok(None);
    }
    let kind = EventKind::ReactionRemoved { message_id: message.clone(), emoji: emoji.clone(), user_id: user.clone() };
    Ok(Some(event(db, app, conversation, kind)?))
}

pub fn put_file(db: &dyn Db, app: &AppId, file: NewFile, now: Millis) -> StoreResult<FileReceipt> {
    let receipt = FileReceipt { id: random_base62(24), token: random_base62(40) };
    db.execute(
        "INSERT INTO files (app_id, id, token, filename, content_type, size, data, message_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
        args![
            app.as_str(),
            &receipt.id,
            &receipt.token,
            file.filename,
            file.content_type,
            file.bytes.len() as i64,
            file.bytes.as_ref(),
            now
        ],
    )?;
    Ok(receipt)
}

/// Claims webhook delivery to `url` for `owner` (see `Store::claim_webhook`).
#[allow(clippy::too_many_arguments, reason = "one row's columns")]
pub fn claim_webhook(
    db: &dyn Db,
    app: &AppId,
    url: &str,
    owner: &str,
    now: Millis,
    lease_until: Millis,
    start: i64,
    take_over: bool,
) -> StoreResult<Option<i64>> {
    match reads::webhook_cursor(db, app, url)? {
        None => {
            db.execute(
                "INSERT INTO webhook_cursors (app_id, url, position, owner, lease_until) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![app.as_str(), url, start, owner, lease_until],
            )?;
            Ok(Some(start))
        }
        Some((position, holder, held_until)) if take_over || holder == owner || held_until < now => {
            db.execute(
                "UPDATE webhook_cursors SET owner = ?3, lease_until = ?4 WHERE app_id = ?1 AND url = ?2",
                args![app.as_str(), url, owner, lease_until],
            )?;
            Ok(Some(position))
        }
        Some(_) => Ok(None),
    }
}

/// Moves webhook delivery to `url` on to `position` and renews the lease, if `owner` still holds it.
pub fn save_webhook_position(
    db: &dyn Db,
    app: &AppId,
    url: &str,
    owner: &str,
    position: i64,
    lease_until: Millis,
) -> StoreResult<bool> {
    let changed = db.execute(
        "UPDATE webhook_cursors SET position = ?4, lease_until = ?5 WHERE app_id = ?1 AND url = ?2 AND owner = ?3",
        args![app.as_str(), url, owner, position, lease_until],
    )?;
    Ok(changed > 0)
}

#[allow(clippy::too_many_arguments, reason = "one row's columns")]
pub fn record_webhook_failure(
    db: &dyn Db,
    app: &AppId,
    url: &str,
    event_id: &str,
    kind: &str,
    attempts: u32,
    last_error: &str,
    now: Millis,
) -> StoreResult<()> {
    db.execute(
        "INSERT INTO webhook_failures (app_id, url, event_id, type, attempts, last_error, failed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (app_id, url, event_id) DO UPDATE SET \
         attempts = excluded.attempts, last_error = excluded.last_error, failed_at = excluded.failed_at",
        args![app.as_str(), url, event_id, kind, attempts as i64, last_error, now],
    )?;
    Ok(())
}
