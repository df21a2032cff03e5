//! Reading rows back into domain types. These functions run on any connection: a reader from the pool, or the
//! writer inside its transaction (to build the events a write returns).

use crate::domain::{
    content::Links,
    conversation::{Access, Conversation, ConversationView, Notify, Participant},
    event::Logged,
    filter::{ConversationFilter, FilterSubject},
    ids::{AppId, ConversationId, MessageId, Seq, UserId},
    limits::MAX_PARTICIPANTS_FOR_READ_BY,
    message::{Attachment, Location, Message, MessageType, MessageView, Origin, ReferencedView},
    reaction::{Emoji, ReactionSummary},
    user::User,
    Custom, Millis, Rejection,
};
use crate::store::{
    log, ConversationListPage, ConversationQuery, ConversationState, Direction, LoggedEvent, MessageWindow,
    NewestWindow, OrderBy, Page, ParticipantEntry, ParticipantsPage, Position, StoreError, StoreResult, StoredFile,
    UserConversation,
};

use super::{args, from_json, Db, Row, Sql};

pub const USER_COLUMNS: &str =
    "id, name, email, phone, photo_url, locale, role, welcome_message, custom, push_tokens, created_at";

pub fn user_from_row(row: &dyn Row) -> StoreResult<User> {
    Ok(User {
        id: UserId::from_trusted(row.string(0)?),
        name: row.string(1)?,
        email: from_json(row.opt_string(2)?.as_deref()),
        phone: from_json(row.opt_string(3)?.as_deref()),
        photo_url: row.opt_string(4)?,
        locale: row.opt_string(5)?,
        role: row.opt_string(6)?,
        welcome_message: row.opt_string(7)?,
        custom: from_json(Some(&row.string(8)?)).unwrap_or_default(),
        push_tokens: from_json(row.opt_string(9)?.as_deref()),
        created_at: row.i64(10)?,
    })
}

pub fn user(db: &dyn Db, app: &AppId, id: &UserId) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = ?1 AND id = ?2");
    db.row(&sql, args![app.as_str(), id.as_str()], user_from_row)
}

pub fn users(db: &dyn Db, app: &AppId, page: &Page) -> StoreResult<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    let after = page.starting_after.as_deref().unwrap_or_default();
    db.rows(&sql, args![app.as_str(), after, page.limit as i64], user_from_row)
}

/// A conversation's columns; the listing reads its sort key after them.
pub const CONVERSATION_COLUMNS: &str = "c.id, c.subject, c.photo_url, c.welcome_messages, c.custom, c.created_at, \
     c.last_message_at, (SELECT last_seq FROM sequences s WHERE s.app_id = c.app_id AND s.conversation_id = c.id)";

fn conversation_from_row(row: &dyn Row) -> StoreResult<Conversation> {
    Ok(Conversation {
        id: ConversationId::from_trusted(row.string(0)?),
        subject: row.opt_string(1)?,
        photo_url: row.opt_string(2)?,
        welcome_messages: from_json(row.opt_string(3)?.as_deref()),
        custom: from_json(Some(&row.string(4)?)).unwrap_or_default(),
        created_at: row.i64(5)?,
        last_message_at: row.opt_i64(6)?,
        last_seq: Seq(row.opt_i64(7)?.unwrap_or(0)),
    })
}

pub fn conversation(db: &dyn Db, app: &AppId, id: &ConversationId) -> StoreResult<Option<Conversation>> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.app_id = ?1 AND c.id = ?2");
    db.row(&sql, args![app.as_str(), id.as_str()], conversation_from_row)
}

pub fn require_conversation(db: &dyn Db, app: &AppId, id: &ConversationId) -> StoreResult<Conversation> {
    conversation(db, app, id)?.ok_or_else(|| Rejection::ConversationNotFound(id.clone()).into())
}

/// That the conversation exists, for a write that needs nothing else of it: one key lookup, no row to decode.
pub fn require_conversation_exists(db: &dyn Db, app: &AppId, id: &ConversationId) -> StoreResult<()> {
    db.row("SELECT 1 FROM conversations WHERE app_id = ?1 AND id = ?2", args![app.as_str(), id.as_str()], |_| Ok(()))?
        .ok_or_else(|| Rejection::ConversationNotFound(id.clone()).into())
}

/// The unread count is kept, not counted (migration `unread_counters`): the conversation's message count less the
/// participant's base.
const PARTICIPANT_COLUMNS: &str = "p.user_id, p.access, p.notify, p.joined_at, p.marked_unread, \
     COALESCE((SELECT s.message_count FROM sequences s WHERE s.app_id = p.app_id \
        AND s.conversation_id = p.conversation_id), 0) - p.unread_base";

fn access_from_stored(stored: &str) -> Access {
    if stored == "Read" {
        Access::Read
    } else {
        Access::ReadWrite
    }
}

fn participant_from_row(row: &dyn Row) -> StoreResult<Participant> {
    let unread_message_count = row.i64(5)?;
    Ok(Participant {
        user_id: UserId::from_trusted(row.string(0)?),
        access: access_from_stored(&row.string(1)?),
        notify: Notify::from_stored(&row.string(2)?),
        joined_at: row.i64(3)?,
        is_unread: row.bool(4)? || unread_message_count > 0,
        unread_message_count: unread_message_count as u64,
    })
}

pub fn participants(db: &dyn Db, app: &AppId, id: &ConversationId) -> StoreResult<Vec<Participant>> {
    let sql = format!(
        "SELECT {PARTICIPANT_COLUMNS} FROM participants p WHERE p.app_id = ?1 AND p.conversation_id = ?2 \
         ORDER BY p.joined_at, p.user_id"
    );
    db.rows(&sql, args![app.as_str(), id.as_str()], participant_from_row)
}

pub fn participant(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<Participant>> {
    let sql = format!(
        "SELECT {PARTICIPANT_COLUMNS} FROM participants p \
         WHERE p.app_id = ?1 AND p.conversation_id = ?2 AND p.user_id = ?3"
    );
    db.row(&sql, args![app.as_str(), conversation.as_str(), user.as_str()], participant_from_row)
}

/// Whether `user` takes part, and with which settings: a primary-key lookup, for rule checks that do not need the
/// unread count `participant` computes.
pub fn membership(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<(Access, Notify)>> {
    db.row(
        "SELECT access, notify FROM participants WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
        args![app.as_str(), conversation.as_str(), user.as_str()],
        |row| Ok((access_from_stored(&row.string(0)?), Notify::from_stored(&row.string(1)?))),
    )
}

pub fn conversation_view(db: &dyn Db, app: &AppId, conversation: Conversation) -> StoreResult<ConversationView> {
    let participants = participants(db, app, &conversation.id)?;
    let last_message = messages_before(db, app, &conversation.id, None, 1, shows_read_by(participants.len()))?.pop();
    Ok(ConversationView { conversation, participants, last_message })
}

/// Runs `read` in one read transaction, so all its statements see the same commit.
pub fn in_snapshot<T>(db: &dyn Db, read: impl FnOnce(&dyn Db) -> StoreResult<T>) -> StoreResult<T> {
    db.begin_snapshot()?;
    let result = read(db);
    // A read transaction has nothing to keep; ending it releases the snapshot.
    db.batch("ROLLBACK")?;
    result
}

pub fn participant_user(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<User>> {
    if membership(db, app, conversation, user)?.is_none() {
        return Ok(None);
    }
    self::user(db, app, user)
}

/// The time of the newest message with a `seq` up to `seq` (0 when there is none): a read marker as a time.
fn read_marker_time(db: &dyn Db, app: &AppId, conversation: &ConversationId, seq: i64) -> StoreResult<Millis> {
    let at = db.row(
        "SELECT created_at FROM messages WHERE app_id = ?1 AND conversation_id = ?2 AND seq <= ?3 \
         ORDER BY seq DESC LIMIT 1",
        args![app.as_str(), conversation.as_str(), seq],
        |row| row.i64(0),
    )?;
    Ok(at.unwrap_or(0))
}

pub fn conversation_state(
    db: &dyn Db,
    app: &AppId,
    id: &ConversationId,
    user: &UserId,
) -> StoreResult<Option<ConversationState>> {
    let Some(mut conversation) = self::conversation(db, app, id)? else { return Ok(None) };
    let Some(participant) = self::participant(db, app, id, user)? else { return Ok(None) };
    conversation.last_seq = Seq(0);
    let markers = db.one(
        "SELECT (SELECT read_until_seq FROM participants WHERE app_id = ?1 AND conversation_id = ?2 AND user_id = ?3), \
                (SELECT MIN(read_until_seq) FROM participants WHERE app_id = ?1 AND conversation_id = ?2), \
                (SELECT COUNT(*) FROM participants WHERE app_id = ?1 AND conversation_id = ?2)",
        args![app.as_str(), id.as_str(), user.as_str()],
        |row| Ok((row.opt_i64(0)?.unwrap_or(0), row.opt_i64(1)?.unwrap_or(0), row.i64(2)?)),
    )?;
    let (mine, everyone, n) = markers;
    let last_message = match messages_before(db, app, id, None, 1, shows_read_by(n as usize))?.pop() {
        Some(message) => Some(message_view(db, app, message)?),
        None => None,
    };
    Ok(Some(ConversationState {
        conversation,
        participant,
        last_message,
        read_until: read_marker_time(db, app, id, mine)?,
        everyone_read_until: read_marker_time(db, app, id, everyone)?,
    }))
}

pub fn conversation_list_state(
    db: &dyn Db,
    app: &AppId,
    user: &UserId,
    limit: usize,
    filter: Option<&ConversationFilter>,
) -> StoreResult<ConversationListPage> {
    // Every conversation of the user with its last activity: the later of its last message (else its creation)
    // and the user's join. Sorted here, so both backends share one portable query.
    let mut member_of = db.rows(
        "SELECT p.conversation_id, CASE WHEN c.last_activity_at > p.joined_at THEN c.last_activity_at \
         ELSE p.joined_at END FROM participants p \
         JOIN conversations c ON c.app_id = p.app_id AND c.id = p.conversation_id \
         WHERE p.app_id = ?1 AND p.user_id = ?2",
        args![app.as_str(), user.as_str()],
        |row| Ok((ConversationId::from_trusted(row.string(0)?), row.i64(1)?)),
    )?;
    member_of.sort_by(|(a, a_at), (b, b_at)| b_at.cmp(a_at).then_with(|| a.cmp(b)));
    let mut conversations = Vec::with_capacity(limit.min(member_of.len()));
    let mut loaded_all = true;
    for (id, _) in &member_of {
        let Some(state) = conversation_state(db, app, id, user)? else { continue };
        if filter.is_some_and(|filter| !filter.matches(&state.filter_subject())) {
            continue;
        }
        if conversations.len() == limit {
            loaded_all = false;
            break;
        }
        conversations.push(state);
    }
    Ok(ConversationListPage { conversations, loaded_all, member_of: member_of.into_iter().map(|(id, _)| id).collect() })
}

pub fn participants_page(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    limit: usize,
) -> StoreResult<Option<ParticipantsPage>> {
    if self::conversation(db, app, conversation)?.is_none() || membership(db, app, conversation, user)?.is_none() {
        return Ok(None);
    }
    // The user's columns first, so `user_from_row` reads them where it expects them.
    let user_columns = USER_COLUMNS.split(", ").map(|column| format!("u.{column}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {user_columns}, p.access, p.notify, p.joined_at FROM participants p \
         JOIN users u ON u.app_id = p.app_id AND u.id = p.user_id \
         WHERE p.app_id = ?1 AND p.conversation_id = ?2 ORDER BY p.joined_at DESC, p.user_id LIMIT ?3"
    );
    let mut participants = db.rows(&sql, args![app.as_str(), conversation.as_str(), limit as i64 + 1], |row| {
        Ok(ParticipantEntry {
            user: user_from_row(row)?,
            access: access_from_stored(&row.string(11)?),
            notify: Notify::from_stored(&row.string(12)?),
            joined_at: row.i64(13)?,
        })
    })?;
    let loaded_all = participants.len() <= limit;
    participants.truncate(limit);
    Ok(Some(ParticipantsPage { participants, loaded_all }))
}

const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.type, m.sender_id, m.text, m.custom, \
     m.referenced_message_id, m.file_id, f.filename, f.size, m.latitude, m.longitude, m.origin, m.created_at, \
     m.edited_at, m.links_allowed";

fn message_from_row(row: &dyn Row) -> StoreResult<Message> {
    let latitude = row.opt_f64(11)?;
    let longitude = row.opt_f64(12)?;
    Ok(Message {
        id: MessageId::from_trusted(row.string(0)?),
        conversation_id: ConversationId::from_trusted(row.string(1)?),
        seq: Seq(row.i64(2)?),
        kind: if row.string(3)? == "SystemMessage" { MessageType::SystemMessage } else { MessageType::UserMessage },
        sender_id: row.opt_string(4)?.map(UserId::from_trusted),
        text: row.string(5)?,
        links: if row.bool(16)? { Links::Allowed } else { Links::Refused },
        custom: from_json::<Custom>(Some(&row.string(6)?)).unwrap_or_default(),
        referenced_message_id: row.opt_string(7)?.map(MessageId::from_trusted),
        attachment: match row.opt_string(8)? {
            Some(file_id) => Some(Attachment {
                file_id,
                filename: row.opt_string(9)?.unwrap_or_default(),
                size: row.opt_i64(10)?.unwrap_or(0) as u64,
            }),
            None => None,
        },
        location: latitude.zip(longitude).map(|(latitude, longitude)| Location { latitude, longitude }),
        origin: Origin::from_stored(&row.string(13)?),
        created_at: row.i64(14)?,
        edited_at: row.opt_i64(15)?,
        read_by: Vec::new(),
        reactions: Vec::new(),
    })
}

/// Whether messages of a conversation with `n_participants` show `readBy` (only small ones do).
fn shows_read_by(n_participants: usize) -> bool {
    n_participants <= MAX_PARTICIPANTS_FOR_READ_BY
}

/// Fills in what a message row does not hold: its reactions and, when `read_by`, who read it.
fn complete_message(db: &dyn Db, app: &AppId, mut message: Message, read_by: bool) -> StoreResult<Message> {
    // `rowid` orders reactions of one millisecond as they were added (PostgreSQL's table names a column so).
    let reactions = db.rows(
        "SELECT emoji, user_id FROM reactions WHERE app_id = ?1 AND conversation_id = ?2 AND message_id = ?3 \
         ORDER BY created_at, rowid",
        args![app.as_str(), message.conversation_id.as_str(), message.id.as_str()],
        |row| Ok((row.string(0)?, row.string(1)?)),
    )?;
    for (emoji, user) in reactions {
        let user = UserId::from_trusted(user);
        match message.reactions.iter_mut().find(|summary| summary.emoji.as_str() == emoji) {
            Some(summary) => summary.users.push(user),
            None => message.reactions.push(ReactionSummary { emoji: Emoji::from_trusted(emoji), users: vec![user] }),
        }
    }
    if read_by {
        let sender = message.sender_id.as_ref().map(UserId::as_str);
        message.read_by = db.rows(
            "SELECT user_id FROM participants WHERE app_id = ?1 AND conversation_id = ?2 AND read_until_seq >= ?3 \
             AND user_id IS DISTINCT FROM ?4 ORDER BY user_id",
            args![app.as_str(), message.conversation_id.as_str(), message.seq.0, sender],
            |row| Ok(UserId::from_trusted(row.string(0)?)),
        )?;
    }
    Ok(message)
}

pub fn n_participants(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<usize> {
    let n = db.one(
        "SELECT COUNT(*) FROM participants WHERE app_id = ?1 AND conversation_id = ?2",
        args![app.as_str(), conversation.as_str()],
        |row| row.i64(0),
    )?;
    Ok(n as usize)
}

/// A message as its row holds it: no reactions, no `readBy`.
fn message_row(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN files f ON f.app_id = m.app_id AND f.id = m.file_id \
         WHERE m.app_id = ?1 AND m.conversation_id = ?2 AND m.id = ?3"
    );
    db.row(&sql, args![app.as_str(), conversation.as_str(), id.as_str()], message_from_row)
}

pub fn message(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<Option<Message>> {
    match message_row(db, app, conversation, id)? {
        Some(message) => {
            let read_by = shows_read_by(n_participants(db, app, conversation)?);
            Ok(Some(complete_message(db, app, message, read_by)?))
        }
        None => Ok(None),
    }
}

/// Messages with a `seq` below `before` (all when `None`), newest first.
pub fn messages_before(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    before: Option<Seq>,
    limit: usize,
    read_by: bool,
) -> StoreResult<Vec<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN files f ON f.app_id = m.app_id AND f.id = m.file_id \
         WHERE m.app_id = ?1 AND m.conversation_id = ?2 AND m.seq < ?3 ORDER BY m.seq DESC LIMIT ?4"
    );
    let before = before.map_or(i64::MAX, |seq| seq.0);
    let rows = db.rows(&sql, args![app.as_str(), conversation.as_str(), before, limit as i64], message_from_row)?;
    rows.into_iter().map(|message| complete_message(db, app, message, read_by)).collect()
}

/// At most `limit` messages with `after < seq <= up_to`, oldest first.
pub fn messages_between(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    after: Seq,
    up_to: Seq,
    limit: usize,
) -> StoreResult<Vec<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN files f ON f.app_id = m.app_id AND f.id = m.file_id \
         WHERE m.app_id = ?1 AND m.conversation_id = ?2 AND m.seq > ?3 AND m.seq <= ?4 ORDER BY m.seq LIMIT ?5"
    );
    let args = args![app.as_str(), conversation.as_str(), after.0, up_to.0, limit as i64];
    let rows = db.rows(&sql, args, message_from_row)?;
    let read_by = shows_read_by(n_participants(db, app, conversation)?);
    rows.into_iter().map(|message| complete_message(db, app, message, read_by)).collect()
}

pub fn messages(db: &dyn Db, app: &AppId, conversation: &ConversationId, page: &Page) -> StoreResult<Vec<Message>> {
    require_conversation_exists(db, app, conversation)?;
    let before = match &page.starting_after {
        Some(cursor) => {
            let seq = db.row(
                "SELECT seq FROM messages WHERE app_id = ?1 AND conversation_id = ?2 AND id = ?3",
                args![app.as_str(), conversation.as_str(), cursor],
                |row| row.i64(0),
            )?;
            Some(Seq(seq.ok_or_else(|| {
                Rejection::invalid("startingAfter", format!("no message {cursor:?} in this conversation"))
            })?))
        }
        None => None,
    };
    let read_by = shows_read_by(n_participants(db, app, conversation)?);
    messages_before(db, app, conversation, before, page.limit, read_by)
}

/// Lists conversations in the query's order, app-wide (`user` is `None`) or those `user` takes part in.
/// Ordering, cursors and time bounds run in SQL; the JSON filter is applied to rows as they come, read in chunks
/// (each after the last row of the one before), so the scan stops soon after the page is full.
pub fn conversation_list(
    db: &dyn Db,
    app: &AppId,
    user: Option<&UserId>,
    query: &ConversationQuery,
) -> StoreResult<Vec<(Conversation, Option<Participant>)>> {
    let sort_column = match query.order_by {
        OrderBy::LastActivity => "c.last_activity_at",
        OrderBy::CreatedAt => "c.created_at",
    };
    let mut after = match &query.starting_after {
        Some(cursor) => {
            let key = db.row(
                &format!("SELECT {sort_column} FROM conversations c WHERE c.app_id = ?1 AND c.id = ?2"),
                args![app.as_str(), cursor.as_str()],
                |row| row.i64(0),
            )?;
            let key = key.ok_or_else(|| Rejection::invalid("startingAfter", format!("no conversation {cursor:?}")))?;
            Some((key, cursor.as_str().to_owned()))
        }
        None => None,
    };
    let filtered = query.unreads_only || query.filter.is_some();
    // Without a filter every row is taken: one chunk of the page's size is the page.
    let chunk = if filtered { (query.limit * 2).clamp(32, 500) } else { query.limit };
    let mut page = Vec::with_capacity(query.limit);
    loop {
        let sql = conversation_chunk(app, user, query, sort_column, after.as_ref(), chunk);
        let rows = db.rows(&sql.text, &sql.values, |row| Ok((conversation_from_row(row)?, row.i64(8)?)))?;
        let full_chunk = rows.len() == chunk;
        for (conversation, key) in rows {
            after = Some((key, conversation.id.as_str().to_owned()));
            let participant = match user {
                Some(user) => participant(db, app, &conversation.id, user)?,
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
                return Ok(page);
            }
        }
        if !full_chunk {
            return Ok(page);
        }
    }
}

/// One chunk of a conversation listing: at most `chunk` rows after `after` (sort key, id) in the query's order.
fn conversation_chunk(
    app: &AppId,
    user: Option<&UserId>,
    query: &ConversationQuery,
    sort_column: &str,
    after: Option<&(i64, String)>,
    chunk: usize,
) -> Sql {
    let (direction, compare) = match query.direction {
        Direction::Desc => ("DESC", "<"),
        Direction::Asc => ("ASC", ">"),
    };
    let mut sql = Sql::new(format!("SELECT {CONVERSATION_COLUMNS}, {sort_column} FROM conversations c"));
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
    if let Some((key, id)) = after {
        sql.push(&format!(" AND ({sort_column}, c.id) {compare} ("));
        sql.bind(*key);
        sql.push(", ");
        sql.bind(id.clone());
        sql.push(")");
    }
    sql.push(&format!(" ORDER BY {sort_column} {direction}, c.id {direction} LIMIT "));
    sql.bind(chunk as i64);
    sql
}

pub fn user_conversations(
    db: &dyn Db,
    app: &AppId,
    user: &UserId,
    query: &ConversationQuery,
) -> StoreResult<Vec<UserConversation>> {
    if self::user(db, app, user)?.is_none() {
        return Err(Rejection::UserNotFound(user.clone()).into());
    }
    conversation_list(db, app, Some(user), query)?
        .into_iter()
        .map(|(conversation, participant)| {
            let participant = participant.expect("joined on participants, so every row has one");
            Ok(UserConversation { view: conversation_view(db, app, conversation)?, participant })
        })
        .collect()
}

pub fn conversations(db: &dyn Db, app: &AppId, query: &ConversationQuery) -> StoreResult<Vec<ConversationView>> {
    conversation_list(db, app, None, query)?
        .into_iter()
        .map(|(conversation, _)| conversation_view(db, app, conversation))
        .collect()
}

/// Expands a message for a snapshot: its sender, and the message it replies to with that one's sender.
pub fn message_view(db: &dyn Db, app: &AppId, message: Message) -> StoreResult<MessageView> {
    let sender = match &message.sender_id {
        Some(id) => user(db, app, id)?,
        None => None,
    };
    let referenced = match &message.referenced_message_id {
        Some(id) => referenced_view(db, app, &message.conversation_id, id)?,
        None => None,
    };
    Ok(MessageView { message, sender, referenced })
}

/// The message a reply points at, with its sender; `None` once it is deleted. A reply's target shows neither
/// reactions nor `readBy`, so they are not read.
pub fn referenced_view(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    id: &MessageId,
) -> StoreResult<Option<Box<ReferencedView>>> {
    let Some(message) = message_row(db, app, conversation, id)? else { return Ok(None) };
    let sender = match &message.sender_id {
        Some(sender) => user(db, app, sender)?,
        None => None,
    };
    Ok(Some(Box::new(ReferencedView { message, sender })))
}

/// A page of a user's message window, read in one transaction so that it is exactly the state at `seq`.
pub fn message_window(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    before: Option<Seq>,
    limit: usize,
) -> StoreResult<MessageWindow> {
    in_snapshot(db, |db| read_window(db, app, conversation, user, before, limit))
}

fn read_window(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    before: Option<Seq>,
    limit: usize,
) -> StoreResult<MessageWindow> {
    let seq = last_seq(db, app, conversation)?;
    let is_participant =
        self::conversation(db, app, conversation)?.is_some() && membership(db, app, conversation, user)?.is_some();
    if !is_participant {
        return Ok(MessageWindow { seq, participant: false, messages: Vec::new(), loaded_all: true });
    }
    window_messages(db, app, conversation, seq, before, limit)
}

/// `user`'s newest window, and the participants too when there are at most `max_participants`, in one snapshot.
pub fn newest_window(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    user: &UserId,
    limit: usize,
    max_participants: usize,
) -> StoreResult<NewestWindow> {
    in_snapshot(db, |db| {
        let n = n_participants(db, app, conversation)?;
        if self::conversation(db, app, conversation)?.is_none() || n > max_participants {
            let window = read_window(db, app, conversation, user, None, limit)?;
            return Ok(NewestWindow { window, participants: None });
        }
        let seq = last_seq(db, app, conversation)?;
        let participants: Vec<UserId> = db.rows(
            "SELECT user_id FROM participants WHERE app_id = ?1 AND conversation_id = ?2",
            args![app.as_str(), conversation.as_str()],
            |row| Ok(UserId::from_trusted(row.string(0)?)),
        )?;
        // The participants' view, whoever asked: the cache keeps it for all of them.
        let window = window_messages(db, app, conversation, seq, None, limit)?;
        Ok(NewestWindow { window, participants: Some(participants) })
    })
}

fn last_seq(db: &dyn Db, app: &AppId, conversation: &ConversationId) -> StoreResult<Seq> {
    let seq = db.row(
        "SELECT last_seq FROM sequences WHERE app_id = ?1 AND conversation_id = ?2",
        args![app.as_str(), conversation.as_str()],
        |row| row.i64(0),
    )?;
    Ok(Seq(seq.unwrap_or(0)))
}

/// A participant's page of the window at `seq`: `limit` messages before `before` (or the newest), expanded.
/// Without `readBy`: a MessageSnapshot does not show it, and it would cost a query per message.
fn window_messages(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    seq: Seq,
    before: Option<Seq>,
    limit: usize,
) -> StoreResult<MessageWindow> {
    let mut messages = messages_before(db, app, conversation, before, limit + 1, false)?;
    let loaded_all = messages.len() <= limit;
    messages.truncate(limit);
    let messages = messages.into_iter().map(|message| message_view(db, app, message)).collect::<Result<_, _>>()?;
    Ok(MessageWindow { seq, participant: true, messages, loaded_all })
}

pub fn file(db: &dyn Db, app: &AppId, id: &str) -> StoreResult<Option<StoredFile>> {
    db.row(
        "SELECT filename, content_type, data FROM files WHERE app_id = ?1 AND id = ?2",
        args![app.as_str(), id],
        |row| {
            Ok(StoredFile {
                filename: row.string(0)?,
                content_type: row.string(1)?,
                bytes: bytes::Bytes::from(row.opt_bytes(2)?.unwrap_or_default()),
            })
        },
    )
}

const LOG_COLUMNS: &str = "position, stream_id, seq, data, committed_at, stream";

fn logged_event_from_row(app: &AppId, row: &dyn Row) -> StoreResult<LoggedEvent> {
    let conversation_id = ConversationId::from_trusted(row.string(1)?);
    let seq = Seq(row.i64(2)?);
    let event = log::decode(conversation_id, seq, &row.string(3)?).map_err(StoreError::Unavailable)?;
    Ok(LoggedEvent { position: Position(row.i64(0)?), app: app.clone(), event, committed_at: row.i64(4)? })
}

fn any_logged_event_from_row(app: &AppId, row: &dyn Row) -> StoreResult<LoggedEvent<Logged>> {
    let event = log::decode_logged(&row.string(5)?, row.string(1)?, Seq(row.i64(2)?), &row.string(3)?)
        .map_err(StoreError::Unavailable)?;
    Ok(LoggedEvent { position: Position(row.i64(0)?), app: app.clone(), event, committed_at: row.i64(4)? })
}

/// One conversation's logged events with `after < seq <= up_to`, in seq order.
pub fn conversation_events(
    db: &dyn Db,
    app: &AppId,
    conversation: &ConversationId,
    after: Seq,
    up_to: Seq,
) -> StoreResult<Vec<LoggedEvent>> {
    db.rows(
        &format!(
            "SELECT {LOG_COLUMNS} FROM event_log \
             WHERE app_id = ?1 AND stream = 'c' AND stream_id = ?2 AND seq > ?3 AND seq <= ?4 ORDER BY seq"
        ),
        args![app.as_str(), conversation.as_str(), after.0, up_to.0],
        |row| logged_event_from_row(app, row),
    )
}

/// At most `limit` of an app's logged events after `after`, in commit order.
pub fn app_events(db: &dyn Db, app: &AppId, after: Position, limit: usize) -> StoreResult<Vec<LoggedEvent<Logged>>> {
    db.rows(
        &format!("SELECT {LOG_COLUMNS} FROM event_log WHERE app_id = ?1 AND position > ?2 ORDER BY position LIMIT ?3"),
        args![app.as_str(), after.0, limit as i64],
        |row| any_logged_event_from_row(app, row),
    )
}

pub fn latest_position(db: &dyn Db, app: &AppId) -> StoreResult<Position> {
    let latest =
        db.one("SELECT COALESCE(MAX(position), 0) FROM event_log WHERE app_id = ?1", args![app.as_str()], |row| {
            row.i64(0)
        })?;
    Ok(Position(latest))
}

/// Where webhook delivery to `url` stands, and who holds it: `(position, owner, lease_until)`.
pub fn webhook_cursor(db: &dyn Db, app: &AppId, url: &str) -> StoreResult<Option<(i64, String, i64)>> {
    db.row(
        "SELECT position, owner, lease_until FROM webhook_cursors WHERE app_id = ?1 AND url = ?2",
        args![app.as_str(), url],
        |row| Ok((row.i64(0)?, row.string(1)?, row.i64(2)?)),
    )
}

/// The latest `seq` of a user's stream.
pub fn user_seq(db: &dyn Db, app: &AppId, user: &UserId) -> StoreResult<Seq> {
    let seq = db.row(
        "SELECT last_seq FROM user_sequences WHERE app_id = ?1 AND user_id = ?2",
        args![app.as_str(), user.as_str()],
        |row| row.i64(0),
    )?;
    Ok(Seq(seq.unwrap_or(0)))
}
