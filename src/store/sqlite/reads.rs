//! Reading rows back into domain types. These functions run on any connection: a reader from the pool, or the
//! writer inside its transaction (to build the events a write returns).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{
    content::Links,
    conversation::{Access, Conversation, ConversationView, Notify, Participant},
    filter::FilterSubject,
    ids::{AppId, ConversationId, MessageId, Seq, UserId},
    limits::MAX_PARTICIPANTS_FOR_READ_BY,
    message::{Attachment, Location, Message, MessageType, MessageView, Origin, ReferencedView},
    reaction::{Emoji, ReactionSummary},
    user::User,
    Custom, Millis, Rejection,
};
use crate::store::{
    log, ConversationQuery, Direction, LoggedEvent, MessageWindow, OrderBy, Page, Position, StoreError, StoreResult,
    UserConversation,
};

use super::{from_json, Sql};

pub const USER_COLUMNS: &str =
    "id, name, email, phone, photo_url, locale, role, welcome_message, custom, push_tokens, created_at";

pub fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId::from_trusted(row.get(0)?),
        name: row.get(1)?,
        email: from_json(row.get::<_, Option<String>>(2)?.as_deref()),
        phone: from_json(row.get::<_, Option<String>>(3)?.as_deref()),
        photo_url: row.get(4)?,
        locale: row.get(5)?,
        role: row.get(6)?,
        welcome_message: row.get(7)?,
        custom: from_json(Some(&row.get::<_, String>(8)?)).unwrap_or_default(),
        push_tokens: from_json(row.get::<_, Option<String>>(9)?.as_deref()),
        created_at: row.get(10)?,
    })
}

pub fn user(connection: &Connection, app: &AppId, id: &UserId) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = ?1 AND id = ?2");
    Ok(connection.prepare_cached(&sql)?.query_row(params![app.as_str(), id.as_str()], user_from_row).optional()?)
}

pub fn users(connection: &Connection, app: &AppId, page: &Page) -> StoreResult<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    let after = page.starting_after.clone().unwrap_or_default();
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params![app.as_str(), after, page.limit as i64], user_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub const CONVERSATION_COLUMNS: &str = "c.id, c.subject, c.photo_url, c.welcome_messages, c.custom, c.created_at, \
     c.last_message_at, (SELECT last_seq FROM sequences s WHERE s.app_id = c.app_id AND s.conversation_id = c.id)";

fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: ConversationId::from_trusted(row.get(0)?),
        subject: row.get(1)?,
        photo_url: row.get(2)?,
        welcome_messages: from_json(row.get::<_, Option<String>>(3)?.as_deref()),
        custom: from_json(Some(&row.get::<_, String>(4)?)).unwrap_or_default(),
        created_at: row.get(5)?,
        last_message_at: row.get(6)?,
        last_seq: Seq(row.get::<_, Option<i64>>(7)?.unwrap_or(0)),
    })
}

pub fn conversation(connection: &Connection, app: &AppId, id: &ConversationId) -> StoreResult<Option<Conversation>> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.app_id = ?1 AND c.id = ?2");
    Ok(connection
        .prepare_cached(&sql)?
        .query_row(params![app.as_str(), id.as_str()], conversation_from_row)
        .optional()?)
}

pub fn require_conversation(connection: &Connection, app: &AppId, id: &ConversationId) -> StoreResult<Conversation> {
    conversation(connection, app, id)?.ok_or_else(|| Rejection::ConversationNotFound(id.clone()).into())
}

const PARTICIPANT_COLUMNS: &str = "p.user_id, p.access, p.notify, p.joined_at, p.marked_unread, \
     (SELECT COUNT(*) FROM messages m WHERE m.app_id = p.app_id AND m.conversation_id = p.conversation_id \
        AND m.seq > p.read_until_seq AND (m.sender_id IS NULL OR m.sender_id != p.user_id))";

fn participant_from_row(row: &Row<'_>) -> rusqlite::Result<Participant> {
    let unread_message_count: i64 = row.get(5)?;
    let marked_unread: bool = row.get(4)?;
    Ok(Participant {
        user_id: UserId::from_trusted(row.get(0)?),
        access: if row.get::<_, String>(1)? == "Read" { Access::Read } else { Access::ReadWrite },
        notify: Notify::from_stored(&row.get::<_, String>(2)?),
        joined_at: row.get(3)?,
        is_unread: marked_unread || unread_message_count > 0,
        unread_message_count: unread_message_count as u64,
    })
}

pub fn participants(connection: &Connection, app: &AppId, id: &ConversationId) -> StoreResult<Vec<Participant>> {
    let sql = format!(
        "SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.app_id = ?1 AND p.conversation_id = ?2 \
         ORDER BY p.joined_at, p.user_id"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params![app.as_str(), id.as_str()], participant_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn participant(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<Participant>> {
    let sql = format!(
        "SELECT {PARTICIPANT_COLUMNS} FROM participants p \
         WHERE p.app_id = ?1 AND p.conversation_id = ?2 AND p.user_id = ?3"
    );
    Ok(connection
        .prepare_cached(&sql)?
        .query_row(params![app.as_str(), conversation.as_str(), user.as_str()], participant_from_row)
        .optional()?)
}

/// Whether `user` takes part, and with which settings: a primary-key lookup, for rule checks that do not need the
/// unread count `participant` computes.
pub fn membership(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<(Access, Notify)>> {
    Ok(connection
        .prepare_cached(
            "SELECT access, notify FROM participants WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
        )?
        .query_row(params![app.as_str(), conversation.as_str(), user.as_str()], |row| {
            let access: String = row.get(0)?;
            let notify: String = row.get(1)?;
            Ok((if access == "Read" { Access::Read } else { Access::ReadWrite }, Notify::from_stored(&notify)))
        })
        .optional()?)
}

pub fn conversation_view(
    connection: &Connection,
    app: &AppId,
    conversation: Conversation,
) -> StoreResult<ConversationView> {
    let participants = participants(connection, app, &conversation.id)?;
    let last_message = messages_before(connection, app, &conversation.id, None, 1, participants.len())?.pop();
    Ok(ConversationView { conversation, participants, last_message })
}

const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.type, m.sender_id, m.text, m.custom, \
     m.referenced_message_id, m.file_id, f.filename, f.size, m.latitude, m.longitude, m.origin, m.created_at, \
     m.edited_at, m.links_allowed";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let file_id: Option<String> = row.get(8)?;
    let latitude: Option<f64> = row.get(11)?;
    let longitude: Option<f64> = row.get(12)?;
    Ok(Message {
        id: MessageId::from_trusted(row.get(0)?),
        conversation_id: ConversationId::from_trusted(row.get(1)?),
        seq: Seq(row.get(2)?),
        kind: if row.get::<_, String>(3)? == "SystemMessage" {
            MessageType::SystemMessage
        } else {
            MessageType::UserMessage
        },
        sender_id: row.get::<_, Option<String>>(4)?.map(UserId::from_trusted),
        text: row.get(5)?,
        links: if row.get::<_, bool>(16)? { Links::Allowed } else { Links::Refused },
        custom: from_json::<Custom>(Some(&row.get::<_, String>(6)?)).unwrap_or_default(),
        referenced_message_id: row.get::<_, Option<String>>(7)?.map(MessageId::from_trusted),
        attachment: match file_id {
            Some(file_id) => Some(Attachment {
                file_id,
                filename: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
                size: row.get::<_, Option<i64>>(10)?.unwrap_or(0) as u64,
            }),
            None => None,
        },
        location: latitude.zip(longitude).map(|(latitude, longitude)| Location { latitude, longitude }),
        origin: Origin::from_stored(&row.get::<_, String>(13)?),
        created_at: row.get(14)?,
        edited_at: row.get(15)?,
        read_by: Vec::new(),
        reactions: Vec::new(),
    })
}

/// Fills in what a message row does not hold: its reactions and (in small conversations) who read it.
fn complete_message(
    connection: &Connection,
    app: &AppId,
    mut message: Message,
    n_participants: usize,
) -> StoreResult<Message> {
    let mut statement = connection.prepare_cached(
        "SELECT emoji, user_id FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 AND message_id = ?3 \
         ORDER BY created_at, rowid",
    )?;
    let rows = statement
        .query_map(params![app.as_str(), message.conversation_id.as_str(), message.id.as_str()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
    for row in rows {
        let (emoji, user) = row?;
        let user = UserId::from_trusted(user);
        match message.reactions.iter_mut().find(|summary| summary.emoji.as_str() == emoji) {
            Some(summary) => summary.users.push(user),
            None => message.reactions.push(ReactionSummary { emoji: Emoji::from_trusted(emoji), users: vec![user] }),
        }
    }
    if n_participants <= MAX_PARTICIPANTS_FOR_READ_BY {
        let mut statement = connection.prepare_cached(
            "SELECT user_id FROM participants WHERE app_id = ?1 AND conversation_id = ?2 AND read_until_seq >= ?3 \
             AND user_id IS NOT ?4 ORDER BY user_id",
        )?;
        let sender = message.sender_id.as_ref().map(UserId::as_str);
        let rows = statement
            .query_map(params![app.as_str(), message.conversation_id.as_str(), message.seq.0, sender], |row| {
                row.get::<_, String>(0)
            })?;
        message.read_by = rows.map(|row| row.map(UserId::from_trusted)).collect::<Result<_, _>>()?;
    }
    Ok(message)
}

pub fn n_participants(connection: &Connection, app: &AppId, conversation: &ConversationId) -> StoreResult<usize> {
    let n: i64 = connection
        .prepare_cached("SELECT COUNT(*) FROM participants WHERE app_id = ?1 AND conversation_id = ?2")?
        .query_row(params![app.as_str(), conversation.as_str()], |row| row.get(0))?;
    Ok(n as usize)
}

/// A message as its row holds it: no reactions, no `readBy`.
fn message_row(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN files f ON f.app_id = m.app_id AND f.id = m.file_id \
         WHERE m.app_id = ?1 AND m.conversation_id = ?2 AND m.id = ?3"
    );
    Ok(connection
        .prepare_cached(&sql)?
        .query_row(params![app.as_str(), conversation.as_str(), id.as_str()], message_from_row)
        .optional()?)
}

pub fn message(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<Option<Message>> {
    match message_row(connection, app, conversation, id)? {
        Some(message) => {
            let n = n_participants(connection, app, conversation)?;
            Ok(Some(complete_message(connection, app, message, n)?))
        }
        None => Ok(None),
    }
}

/// Messages with a `seq` below `before` (all when `None`), newest first.
pub fn messages_before(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    before: Option<Seq>,
    limit: usize,
    n_participants: usize,
) -> StoreResult<Vec<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN files f ON f.app_id = m.app_id AND f.id = m.file_id \
         WHERE m.app_id = ?1 AND m.conversation_id = ?2 AND m.seq < ?3 ORDER BY m.seq DESC LIMIT ?4"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let before = before.map_or(i64::MAX, |seq| seq.0);
    let rows = statement
        .query_map(params![app.as_str(), conversation.as_str(), before, limit as i64], message_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(|message| complete_message(connection, app, message, n_participants)).collect()
}

pub fn messages(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    page: &Page,
) -> StoreResult<Vec<Message>> {
    require_conversation(connection, app, conversation)?;
    let before = match &page.starting_after {
        Some(cursor) => {
            let seq: Option<i64> = connection
                .prepare_cached("SELECT seq FROM messages WHERE app_id = ?1 AND conversation_id = ?2 AND id = ?3")?
                .query_row(params![app.as_str(), conversation.as_str(), cursor], |row| row.get(0))
                .optional()?;
            Some(Seq(seq.ok_or_else(|| {
                Rejection::invalid("startingAfter", format!("no message {cursor:?} in this conversation"))
            })?))
        }
        None => None,
    };
    let n = n_participants(connection, app, conversation)?;
    messages_before(connection, app, conversation, before, page.limit, n)
}

/// Lists conversations in the query's order, app-wide (`user` is `None`) or those `user` takes part in.
/// Ordering, cursors and time bounds run in SQL; the JSON filter is applied to rows as they stream by, so the scan
/// stops as soon as the page is full.
pub fn conversation_list(
    connection: &Connection,
    app: &AppId,
    user: Option<&UserId>,
    query: &ConversationQuery,
) -> StoreResult<Vec<(Conversation, Option<Participant>)>> {
    let sort_column = match query.order_by {
        OrderBy::LastActivity => "c.last_activity_at",
        OrderBy::CreatedAt => "c.created_at",
    };
    let (direction, compare) = match query.direction {
        Direction::Desc => ("DESC", "<"),
        Direction::Asc => ("ASC", ">"),
    };
    let mut sql = Sql::new(format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c"));
    if let Some(user) = user {
        sql.push(" JOIN participants p ON p.app_id = c.app_id AND p.conversation_id = c.id AND p.user_id = ");
        sql.bind(user.as_str().to_owned());
    }
    sql.push(" WHERE c.app_id = ");
    sql.bind(app.as_str().to_owned());
    if let Some(before) = query.last_message_before {
        sql.push(" AND c.last_message_at < ");
        sql.bind(before);
    }
    if let Some(after) = query.last_message_after {
        sql.push(" AND c.last_message_at > ");
        sql.bind(after);
    }
    if let Some(offset) = query.offset_ts {
        sql.push(&format!(" AND {sort_column} {compare} "));
        sql.bind(offset);
    }
    if let Some(cursor) = &query.starting_after {
        let key: Option<i64> = connection
            .query_row(
                &format!("SELECT {sort_column} FROM conversations c WHERE c.app_id = ?1 AND c.id = ?2"),
                params![app.as_str(), cursor.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        let key = key.ok_or_else(|| Rejection::invalid("startingAfter", format!("no conversation {cursor:?}")))?;
        sql.push(&format!(" AND ({sort_column}, c.id) {compare} ("));
        sql.bind(key);
        sql.push(", ");
        sql.bind(cursor.as_str().to_owned());
        sql.push(")");
    }
    sql.push(&format!(" ORDER BY {sort_column} {direction}, c.id {direction}"));

    let mut statement = connection.prepare(&sql.text)?;
    let mut rows = statement.query(rusqlite::params_from_iter(sql.values.iter()))?;
    let mut page = Vec::with_capacity(query.limit);
    while let Some(row) = rows.next()? {
        let conversation = conversation_from_row(row)?;
        let participant = match user {
            Some(user) => participant(connection, app, &conversation.id, user)?,
            None => None,
        };
        if query.unreads_only && !participant.as_ref().is_some_and(|p| p.is_unread) {
            continue;
        }
        if let Some(filter) = &query.filter {
            let subject = FilterSubject { conversation: &conversation, participant: participant.as_ref() };
            if !filter.matches(&subject) {
                continue;
            }
        }
        page.push((conversation, participant));
        if page.len() == query.limit {
            break;
        }
    }
    Ok(page)
}

pub fn user_conversations(
    connection: &Connection,
    app: &AppId,
    user: &UserId,
    query: &ConversationQuery,
) -> StoreResult<Vec<UserConversation>> {
    if self::user(connection, app, user)?.is_none() {
        return Err(Rejection::UserNotFound(user.clone()).into());
    }
    conversation_list(connection, app, Some(user), query)?
        .into_iter()
        .map(|(conversation, participant)| {
            let participant = participant.expect("joined on participants, so every row has one");
            Ok(UserConversation { view: conversation_view(connection, app, conversation)?, participant })
        })
        .collect()
}

pub fn conversations(
    connection: &Connection,
    app: &AppId,
    query: &ConversationQuery,
) -> StoreResult<Vec<ConversationView>> {
    conversation_list(connection, app, None, query)?
        .into_iter()
        .map(|(conversation, _)| conversation_view(connection, app, conversation))
        .collect()
}

/// Expands a message for a snapshot: its sender, and the message it replies to with that one's sender.
pub fn message_view(connection: &Connection, app: &AppId, message: Message) -> StoreResult<MessageView> {
    let sender = match &message.sender_id {
        Some(id) => user(connection, app, id)?,
        None => None,
    };
    let referenced = match &message.referenced_message_id {
        Some(id) => referenced_view(connection, app, &message.conversation_id, id)?,
        None => None,
    };
    Ok(MessageView { message, sender, referenced })
}

/// The message a reply points at, with its sender; `None` once it is deleted. A reply's target shows neither
/// reactions nor `readBy`, so they are not read.
pub fn referenced_view(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<Option<Box<ReferencedView>>> {
    let Some(message) = message_row(connection, app, conversation, id)? else { return Ok(None) };
    let sender = match &message.sender_id {
        Some(sender) => user(connection, app, sender)?,
        None => None,
    };
    Ok(Some(Box::new(ReferencedView { message, sender })))
}

/// A page of a user's message window, read in one transaction so that it is exactly the state at `seq`.
pub fn message_window(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    before: Option<Seq>,
    limit: usize,
) -> StoreResult<MessageWindow> {
    connection.execute_batch("BEGIN")?;
    let window = read_window(connection, app, conversation, user, before, limit);
    // A read transaction has nothing to keep; ending it releases the snapshot.
    connection.execute_batch("ROLLBACK")?;
    window
}

fn read_window(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    before: Option<Seq>,
    limit: usize,
) -> StoreResult<MessageWindow> {
    let seq: Option<i64> = connection
        .prepare_cached("SELECT last_seq FROM sequences WHERE app_id = ?1 AND conversation_id = ?2")?
        .query_row(params![app.as_str(), conversation.as_str()], |row| row.get(0))
        .optional()?;
    let seq = Seq(seq.unwrap_or(0));
    let is_participant = self::conversation(connection, app, conversation)?.is_some()
        && membership(connection, app, conversation, user)?.is_some();
    if !is_participant {
        return Ok(MessageWindow { seq, participant: false, messages: Vec::new(), loaded_all: true });
    }
    let n = n_participants(connection, app, conversation)?;
    let mut messages = messages_before(connection, app, conversation, before, limit + 1, n)?;
    let loaded_all = messages.len() <= limit;
    messages.truncate(limit);
    let messages =
        messages.into_iter().map(|message| message_view(connection, app, message)).collect::<Result<_, _>>()?;
    Ok(MessageWindow { seq, participant: true, messages, loaded_all })
}

fn logged_event_from_row(app: &AppId, row: &Row<'_>) -> rusqlite::Result<Result<LoggedEvent, String>> {
    let conversation_id = ConversationId::from_trusted(row.get(1)?);
    let seq = Seq(row.get(2)?);
    let data: String = row.get(3)?;
    let committed_at: Millis = row.get(4)?;
    let position = Position(row.get(0)?);
    Ok(log::decode(conversation_id, seq, &data).map(|event| LoggedEvent {
        position,
        app: app.clone(),
        event,
        committed_at,
    }))
}

fn collect_logged(
    rows: impl Iterator<Item = rusqlite::Result<Result<LoggedEvent, String>>>,
) -> StoreResult<Vec<LoggedEvent>> {
    let mut events = Vec::new();
    for row in rows {
        events.push(row?.map_err(StoreError::Unavailable)?);
    }
    Ok(events)
}

/// One conversation's logged events with `after < seq <= up_to`, in seq order.
pub fn conversation_events(
    connection: &Connection,
    app: &AppId,
    conversation: &ConversationId,
    after: Seq,
    up_to: Seq,
) -> StoreResult<Vec<LoggedEvent>> {
    let mut statement = connection.prepare_cached(
        "SELECT position, conversation_id, seq, data, committed_at FROM event_log \
         WHERE app_id = ?1 AND conversation_id = ?2 AND seq > ?3 AND seq <= ?4 ORDER BY seq",
    )?;
    let rows = statement.query_map(params![app.as_str(), conversation.as_str(), after.0, up_to.0], |row| {
        logged_event_from_row(app, row)
    })?;
    collect_logged(rows)
}

/// At most `limit` of an app's logged events after `after`, in commit order.
pub fn app_events(
    connection: &Connection,
    app: &AppId,
    after: Position,
    limit: usize,
) -> StoreResult<Vec<LoggedEvent>> {
    let mut statement = connection.prepare_cached(
        "SELECT position, conversation_id, seq, data, committed_at FROM event_log \
         WHERE app_id = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
    )?;
    let rows =
        statement.query_map(params![app.as_str(), after.0, limit as i64], |row| logged_event_from_row(app, row))?;
    collect_logged(rows)
}
