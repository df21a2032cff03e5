//! The `Store` both SQL backends are: writes go to the node's writer (group commit), reads to a small pool of
//! connections used from tokio's blocking pool. Nothing here runs on the async runtime's threads.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{args, reads, writer, writes, Db};
use crate::domain::{
    conversation::{ConversationPatch, ConversationView, ParticipantSettings},
    event::{Event, Logged},
    filter::ConversationFilter,
    ids::{AppId, ConversationId, MessageId, Seq, UserId},
    message::{ImportedMessage, Message, MessageEdit, NewMessage},
    reaction::Emoji,
    user::{User, UserPatch},
    Actor, Millis,
};
use crate::store::{
    Appended, ConversationListPage, ConversationQuery, ConversationState, FileReceipt, HasEvents, LoggedEvent,
    MessageWindow, NewFile, NewestWindow, Page, ParticipantsPage, Position, Store, StoreError, StoreHooks, StoreResult,
    StoredFile, UserConversation, WebhookFailure,
};

/// Opens a connection of the backend.
pub type Connect = Arc<dyn Fn() -> StoreResult<Box<dyn Db>> + Send + Sync>;

pub struct SqlStore {
    writer: writer::Writer,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    connect: Connect,
    /// Idle connections. A std mutex: it is held only to push or pop, never across an await.
    idle: std::sync::Mutex<Vec<Box<dyn Db>>>,
    permits: Semaphore,
}

impl SqlStore {
    /// Starts the writer on `write` (a migrated connection) and the pruner; reads open up to `max_readers`
    /// connections with `connect`, which also replaces a broken write connection.
    pub fn start(
        write: Box<dyn Db>,
        connect: Connect,
        max_readers: usize,
        hooks: StoreHooks,
        retention: crate::store::Retention,
    ) -> StoreResult<Self> {
        let reconnect = {
            let connect = connect.clone();
            Box::new(move || connect())
        };
        let writer = writer::Writer::spawn(write, reconnect, hooks, retention)?;
        writer::spawn_pruner(writer.downgrade())?;
        let readers = Arc::new(ReaderPool {
            connect,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Semaphore::new(max_readers),
        });
        Ok(Self { writer, readers })
    }

    /// Tells whether the store is still open (its writer runs).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub fn weak_writer(&self) -> writer::WeakWriter {
        self.writer.downgrade()
    }

    async fn write<T, F>(&self, app: AppId, work: F) -> StoreResult<T>
    where
        T: HasEvents + Send + 'static,
        F: FnMut(&dyn Db) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(app, work).await
    }

    /// Runs a read on the blocking pool with a pooled connection; a connection the server closed is not kept.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.readers.permits.acquire().await.map_err(|_| StoreError::Unavailable("closed".into()))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let pooled = readers.idle.lock().expect("reader pool lock poisoned").pop();
            let db = match pooled {
                Some(db) => db,
                None => (readers.connect)()?,
            };
            let result = work(&*db);
            if !db.is_broken() {
                readers.idle.lock().expect("reader pool lock poisoned").push(db);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("read task failed: {error}")))?
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn check(&self) -> StoreResult<()> {
        self.read(|db| db.one("SELECT 1", args![], |_| Ok(()))).await
    }

    async fn upsert_users(&self, app: &AppId, users: Vec<(UserId, UserPatch)>, now: Millis) -> StoreResult<()> {
        let app = app.clone();
        self.write(app.clone(), move |db| writes::upsert_users(db, &app, users.clone(), now)).await.map(drop)
    }

    async fn user_state(&self, app: &AppId, id: &UserId) -> StoreResult<(Seq, Option<User>)> {
        let (app, id) = (app.clone(), id.clone());
        self.read(move |db| Ok((reads::user_seq(db, &app, &id)?, reads::user(db, &app, &id)?))).await
    }

    async fn user(&self, app: &AppId, id: &UserId) -> StoreResult<Option<User>> {
        let (app, id) = (app.clone(), id.clone());
        self.read(move |db| reads::user(db, &app, &id)).await
    }

    async fn participant_user(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<User>> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.read(move |db| reads::participant_user(db, &app, &conversation, &user)).await
    }

    async fn conversation_state(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<ConversationState>> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.read(move |db| reads::in_snapshot(db, |db| reads::conversation_state(db, &app, &conversation, &user)))
            .await
    }

    async fn conversation_list_state(
        &self,
        app: &AppId,
        user: &UserId,
        limit: usize,
        filter: Option<std::sync::Arc<ConversationFilter>>,
    ) -> StoreResult<ConversationListPage> {
        let (app, user) = (app.clone(), user.clone());
        self.read(move |db| {
            reads::in_snapshot(db, |db| reads::conversation_list_state(db, &app, &user, limit, filter.as_deref()))
        })
        .await
    }

    async fn conversation_states(
        &self,
        app: &AppId,
        user: &UserId,
        conversations: Vec<ConversationId>,
    ) -> StoreResult<Vec<(ConversationId, Option<ConversationState>)>> {
        let (app, user) = (app.clone(), user.clone());
        self.read(move |db| {
            reads::in_snapshot(db, |db| {
                conversations
                    .into_iter()
                    .map(|id| Ok((id.clone(), reads::conversation_state(db, &app, &id, &user)?)))
                    .collect()
            })
        })
        .await
    }

    async fn participants_page(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        limit: usize,
    ) -> StoreResult<Option<ParticipantsPage>> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.read(move |db| {
            reads::in_snapshot(db, |db| reads::participants_page(db, &app, &conversation, &user, limit))
        })
        .await
    }

    async fn users(&self, app: &AppId, page: Page) -> StoreResult<Vec<User>> {
        let app = app.clone();
        self.read(move |db| reads::users(db, &app, &page)).await
    }

    async fn user_conversations(
        &self,
        app: &AppId,
        user: &UserId,
        query: ConversationQuery,
    ) -> StoreResult<Vec<UserConversation>> {
        let (app, user) = (app.clone(), user.clone());
        self.read(move |db| reads::user_conversations(db, &app, &user, &query)).await
    }

    async fn upsert_conversation(
        &self,
        app: &AppId,
        id: &ConversationId,
        patch: ConversationPatch,
        now: Millis,
    ) -> StoreResult<Vec<Event>> {
        let (app, id) = (app.clone(), id.clone());
        self.write(app.clone(), move |db| writes::upsert_conversation(db, &app, &id, patch.clone(), now)).await
    }

    async fn conversation(&self, app: &AppId, id: &ConversationId) -> StoreResult<Option<ConversationView>> {
        let (app, id) = (app.clone(), id.clone());
        self.read(move |db| match reads::conversation(db, &app, &id)? {
            Some(conversation) => Ok(Some(reads::conversation_view(db, &app, conversation)?)),
            None => Ok(None),
        })
        .await
    }

    async fn conversations(&self, app: &AppId, query: ConversationQuery) -> StoreResult<Vec<ConversationView>> {
        let app = app.clone();
        self.read(move |db| reads::conversations(db, &app, &query)).await
    }

    async fn delete_conversation(&self, app: &AppId, id: &ConversationId) -> StoreResult<Event> {
        let (app, id) = (app.clone(), id.clone());
        self.write(app.clone(), move |db| writes::delete_conversation(db, &app, &id)).await
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
        self.write(app.clone(), move |c| writes::set_read_state(c, &app, &conversation, &user, is_unread))
            .await
            .map(drop)
    }

    async fn import_messages(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        messages: Vec<ImportedMessage>,
        now: Millis,
    ) -> StoreResult<Appended> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.write(app.clone(), move |db| writes::import_messages(db, &app, &conversation, messages.clone(), now)).await
    }

    async fn append_messages(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> StoreResult<Appended> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.write(app.clone(), move |c| writes::append_messages(c, &app, &conversation, messages.clone(), now)).await
    }

    async fn message(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        id: &MessageId,
    ) -> StoreResult<Option<Message>> {
        let (app, conversation, id) = (app.clone(), conversation.clone(), id.clone());
        self.read(move |c| {
            reads::require_conversation_exists(c, &app, &conversation)?;
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
        self.write(app.clone(), move |c| writes::edit_message(c, &app, &conversation, &id, edit.clone(), &actor, now))
            .await
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

    async fn newest_window(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        limit: usize,
        max_participants: usize,
    ) -> StoreResult<NewestWindow> {
        let (app, conversation, user) = (app.clone(), conversation.clone(), user.clone());
        self.read(move |c| reads::newest_window(c, &app, &conversation, &user, limit, max_participants)).await
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
        self.write(app.clone(), move |c| writes::put_file(c, &app, file.clone(), now)).await
    }

    async fn file(&self, app: &AppId, id: &str) -> StoreResult<Option<StoredFile>> {
        let (app, id) = (app.clone(), id.to_owned());
        self.read(move |c| reads::file(c, &app, &id)).await
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

    async fn app_events(&self, app: &AppId, after: Position, limit: usize) -> StoreResult<Vec<LoggedEvent<Logged>>> {
        let app = app.clone();
        self.read(move |c| reads::app_events(c, &app, after, limit)).await
    }

    async fn messages_between(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        after: Seq,
        up_to: Seq,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let (app, conversation) = (app.clone(), conversation.clone());
        self.read(move |c| reads::messages_between(c, &app, &conversation, after, up_to, limit)).await
    }

    async fn claim_webhook(
        &self,
        app: &AppId,
        url: &str,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        start: Position,
        take_over: bool,
    ) -> StoreResult<Option<Position>> {
        let (app, url, owner) = (app.clone(), url.to_owned(), owner.to_owned());
        let claimed = self
            .write(app.clone(), move |db| {
                writes::claim_webhook(db, &app, &url, &owner, now, lease_until, start.0, take_over)
            })
            .await?;
        Ok(claimed.map(Position))
    }

    async fn save_webhook_position(
        &self,
        app: &AppId,
        url: &str,
        owner: &str,
        position: Position,
        lease_until: Millis,
    ) -> StoreResult<bool> {
        let (app, url, owner) = (app.clone(), url.to_owned(), owner.to_owned());
        self.write(app.clone(), move |db| {
            writes::save_webhook_position(db, &app, &url, &owner, position.0, lease_until)
        })
        .await
    }

    async fn record_webhook_failure(&self, app: &AppId, url: &str, failure: WebhookFailure) -> StoreResult<()> {
        let (app, url) = (app.clone(), url.to_owned());
        self.write(app.clone(), move |db| {
            writes::record_webhook_failure(
                db,
                &app,
                &url,
                &failure.event_id,
                failure.kind,
                failure.attempts,
                &failure.last_error,
                failure.failed_at,
            )
        })
        .await
    }

    async fn latest_position(&self, app: &AppId) -> StoreResult<Position> {
        let app = app.clone();
        self.read(move |c| reads::latest_position(c, &app)).await
    }

    async fn prune_events(&self, now: Millis) -> StoreResult<u64> {
        self.writer.prune(now).await
    }
}
