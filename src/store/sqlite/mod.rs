//! The embedded SQLite backend: WAL, `synchronous=FULL`, one writer thread with group commit, a small pool of
//! reader connections used from tokio's blocking pool. Nothing here runs on the async runtime's threads.
//!
//! `writes.rs` holds the transactions, `reads.rs` the queries and row mapping, `writer.rs` the commit loop.

mod reads;
mod writer;
mod writes;

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Semaphore;

use super::{
    Appended, ConversationQuery, FileReceipt, HasEvents, LoggedEvent, MessageWindow, NewFile, Page, Position, Store,
    StoreConfig, StoreError, StoreHooks, StoreResult, StoredFile, UserConversation,
};
use crate::domain::{
    conversation::{ConversationPatch, ConversationView, ParticipantSettings},
    event::Event,
    ids::{AppId, ConversationId, MessageId, Seq, UserId},
    message::{Message, MessageEdit, NewMessage},
    reaction::Emoji,
    user::{User, UserPatch},
    Actor, Millis,
};

/// Versioned migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_message_links.sql"),
    include_str!("../migrations/sqlite/0003_event_log.sql"),
];

/// Reader connections kept open; more concurrent reads wait for one to come back.
const MAX_READERS: usize = 8;

const DATABASE_FILE: &str = "natter.sqlite3";

pub struct SqliteStore {
    writer: writer::Writer,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    path: std::path::PathBuf,
    /// Idle connections. A std mutex: it is held only to push or pop, never across an await.
    idle: std::sync::Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `config.data_dir` and runs pending migrations. Committed events
    /// go to `hooks.listener`, in commit order.
    pub fn open(config: &StoreConfig, hooks: StoreHooks) -> StoreResult<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", config.data_dir.display()))
        })?;
        let path = config.data_dir.join(DATABASE_FILE);
        let mut connection = open_connection(&path)?;
        migrate(&mut connection)?;
        // Checkpoints run on their own thread, so the writer never copies the WAL back while callers wait.
        connection.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        let writer = writer::Writer::spawn(connection, hooks, config.retention)
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        spawn_maintenance(open_connection(&path)?, writer.downgrade())
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let readers = Arc::new(ReaderPool {
            path,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_READERS),
        });
        Ok(Self { writer, readers })
    }

    async fn write<T, F>(&self, app: AppId, work: F) -> StoreResult<T>
    where
        T: HasEvents + Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(app, work).await
    }

    /// Runs a read on the blocking pool with a pooled connection.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.readers.permits.acquire().await.map_err(|_| StoreError::Unavailable("closed".into()))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let pooled = readers.idle.lock().expect("reader pool lock poisoned").pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => open_connection(&readers.path)?,
            };
            let result = work(&connection);
            readers.idle.lock().expect("reader pool lock poisoned").push(connection);
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("read task failed: {error}")))?
    }
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, so an acknowledged write
    // survives power loss, not only a crash of the process.
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;",
    )?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// How often the maintenance thread copies committed WAL frames back into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// How often it asks the writer to prune the event log.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Runs PASSIVE checkpoints (they never block the writer) and asks for log pruning until the store is dropped.
fn spawn_maintenance(connection: Connection, writer: writer::WeakWriter) -> std::io::Result<()> {
    std::thread::Builder::new().name("natter-sqlite-maintenance".into()).spawn(move || {
        let mut last_prune = std::time::Instant::now();
        while writer.is_alive() {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(cause = %error, "checkpoint failed");
            }
            if last_prune.elapsed() >= PRUNE_INTERVAL {
                last_prune = std::time::Instant::now();
                writer.request_prune(wall_clock_millis());
            }
        }
    })?;
    Ok(())
}

fn wall_clock_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as Millis)
}

fn migrate(connection: &mut Connection) -> StoreResult<()> {
    let applied: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}

/// Encodes a column value that holds a map or a list.
fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("maps and lists of strings always encode")
}

fn from_json<T: DeserializeOwned>(raw: Option<&str>) -> Option<T> {
    raw.and_then(|raw| serde_json::from_str(raw).ok())
}

/// A query assembled from fragments with positional parameters.
struct Sql {
    text: String,
    values: Vec<rusqlite::types::Value>,
}

impl Sql {
    fn new(text: String) -> Self {
        Self { text, values: Vec::new() }
    }

    fn push(&mut self, fragment: &str) {
        self.text.push_str(fragment);
    }

    fn bind(&mut self, value: impl Into<rusqlite::types::Value>) {
        self.values.push(value.into());
        self.text.push_str(&format!("?{}", self.values.len()));
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn check(&self) -> StoreResult<()> {
        self.read(|connection| Ok(connection.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn upsert_users(&self, app: &AppId, users: Vec<(UserId, UserPatch)>, now: Millis) -> StoreResult<()> {
        let app = app.clone();
        self.write(app.clone(), move |connection| writes::upsert_users(connection, &app, users, now)).await
    }

    async fn user(&self, app: &AppId, id: &UserId) -> StoreResult<Option<User>> {
        let (app, id) = (app.clone(), id.clone());
        self.read(move |connection| reads::user(connection, &app, &id)).await
    }

    async fn users(&self, app: &AppId, page: Page) -> StoreResult<Vec<User>> {
        let app = app.clone();
        self.read(move |connection| reads::users(connection, &app, &page)).await
    }

    async fn user_conversations(
        &self,
        app: &AppId,
        user: &UserId,
        query: ConversationQuery,
    ) -> StoreResult<Vec<UserConversation>> {
        let (app, user) = (app.clone(), user.clone());
        self.read(move |connection| reads::user_conversations(connection, &app, &user, &query)).await
    }

    async fn upsert_conversation(
        &self,
        app: &AppId,
        id: &ConversationId,
        patch: ConversationPatch,
        now: Millis,
    ) -> StoreResult<Vec<Event>> {
        let (app, id) = (app.clone(), id.clone());
        self.write(app.clone(), move |connection| writes::upsert_conversation(connection, &app, &id, patch, now)).await
    }

    async fn conversation(&self, app: &AppId, id: &ConversationId) -> StoreResult<Option<ConversationView>> {
        let (app, id) = (app.clone(), id.clone());
        self.read(move |connection| match reads::conversation(connection, &app, &id)? {
            Some(conversation) => Ok(Some(reads::conversation_view(connection, &app, conversation)?)),
            None => Ok(None),
        })
        .await
    }

    async fn conversations(&self, app: &AppId, query: ConversationQuery) -> StoreResult<Vec<ConversationView>> {
        let app = app.clone();
        self.read(move |connection| reads::conversations(connection, &app, &query)).await
    }

    async fn delete_conversation(&self, app: &AppId, id: &ConversationId) -> StoreResult<Event> {
        let (app, id) = (app.clone(), id.clone());
        self.write(app.clone(), move |connection| writes::delete_conversation(connection, &app, &id)).await
    }

    async fn put_participant(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        settings: ParticipantSettings,
        now: Millis,
    ) -> StoreResult<Option<Event>> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.write(app.clone(), move |c| writes::put_participant(c, &app, &conversation, &user, settings, now)).await
    }

    async fn patch_participant(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        settings: ParticipantSettings,
    ) -> StoreResult<Option<Event>> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.write(app.clone(), move |c| writes::patch_participant(c, &app, &conversation, &user, settings)).await
    }

    async fn remove_participant(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<Event>> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.write(app.clone(), move |c| writes::remove_participant(c, &app, &conversation, &user)).await
    }

    async fn set_read_state(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        is_unread: Option<bool>,
    ) -> StoreResult<()> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.write(app.clone(), move |c| writes::set_read_state(c, &app, &conversation, &user, is_unread)).await
    }

    async fn append_messages(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> StoreResult<Appended> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.write(app.clone(), move |c| writes::append_messages(c, &app, &conversation, messages, now)).await
    }

    async fn message(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        id: &MessageId,
    ) -> StoreResult<Option<Message>> {
        let (app, conversation, id) = (app.clone(), conversation.clone(), id.clone());
        self.read(move |c| {
            reads::require_conversation(c, &app, &conversation)?;
            reads::message(c, &app, &conversation, &id)
        })
        .await
    }

    async fn messages(&self, app: &AppId, conversation: &ConversationId, page: Page) -> StoreResult<Vec<Message>> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.read(move |c| reads::messages(c, &app, &conversation, &page)).await
    }

    async fn edit_message(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        id: &MessageId,
        edit: MessageEdit,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Event> {
        let (app, conversation, id, actor) = (app.clone(), conversation.clone(), id.clone(), actor.clone());
        self.write(app.clone(), move |c| writes::edit_message(c, &app, &conversation, &id, edit, &actor, now)).await
    }

    async fn delete_message(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        id: &MessageId,
        actor: &Actor,
    ) -> StoreResult<Option<Event>> {
        let (app, conversation, id, actor) = (app.clone(), conversation.clone(), id.clone(), actor.clone());
        self.write(app.clone(), move |c| writes::delete_message(c, &app, &conversation, &id, &actor)).await
    }

    async fn message_window(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        before: Option<Seq>,
        limit: usize,
    ) -> StoreResult<MessageWindow> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.read(move |c| reads::message_window(c, &app, &conversation, &user, before, limit)).await
    }

    async fn delete_all_messages(&self, app: &AppId, conversation: &ConversationId) -> StoreResult<Event> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.write(app.clone(), move |c| writes::delete_all_messages(c, &app, &conversation)).await
    }

    async fn add_reaction(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        message: &MessageId,
        emoji: &Emoji,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<Option<Event>> {
        let (app, conversation, message) = (app.clone(), conversation.clone(), message.clone());
        let (emoji, user) = (emoji.clone(), user.clone());
        self.write(app.clone(), move |c| writes::add_reaction(c, &app, &conversation, &message, &emoji, &user, now))
            .await
    }

    async fn remove_reaction(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        message: &MessageId,
        emoji: &Emoji,
        user: &UserId,
    ) -> StoreResult<Option<Event>> {
        let (app, conversation, message) = (app.clone(), conversation.clone(), message.clone());
        let (emoji, user) = (emoji.clone(), user.clone());
        self.write(app.clone(), move |c| writes::remove_reaction(c, &app, &conversation, &message, &emoji, &user)).await
    }

    async fn put_file(&self, app: &AppId, file: NewFile, now: Millis) -> StoreResult<FileReceipt> {
        let app = app.clone();
        self.write(app.clone(), move |c| writes::put_file(c, &app, file, now)).await
    }

    async fn file(&self, app: &AppId, id: &str) -> StoreResult<Option<StoredFile>> {
        let (app, id) = (app.clone(), id.to_owned());
        self.read(move |c| {
            use rusqlite::OptionalExtension;
            Ok(c.prepare_cached("SELECT filename, content_type, data FROM files WHERE app_id = ?1 AND id = ?2")?
                .query_row(rusqlite::params![app.as_str(), id], |row| {
                    Ok(StoredFile {
                        filename: row.get(0)?,
                        content_type: row.get(1)?,
                        bytes: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)?),
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn conversation_events(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        after: Seq,
        up_to: Seq,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.read(move |c| reads::conversation_events(c, &app, &conversation, after, up_to)).await
    }

    async fn app_events(&self, app: &AppId, after: Position, limit: usize) -> StoreResult<Vec<LoggedEvent>> {
        let app = app.clone();
        self.read(move |c| reads::app_events(c, &app, after, limit)).await
    }

    async fn prune_events(&self, now: Millis) -> StoreResult<u64> {
        self.writer.prune(now).await
    }
}
