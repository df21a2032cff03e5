//! The durable truth: the `Store` trait, its error, `open` (which picks the backend), the event log (`log`) and the
//! backends beside it (`sqlite` today).
//!
//! A write returns only after it is committed, and returns the events it produced, each with the `seq` the store
//! assigned inside the same transaction; the same transaction appends them to the event log. Business rules that
//! need stored data (is the sender a participant? does the referenced message exist?) are checked inside the write
//! transaction, so the check and the write are atomic: a backend reads the facts and calls the pure rules next to
//! the domain types (`domain::message::check_sender`, `domain::reaction::check_add`, ...), and a refusal comes
//! back as `StoreError::Rejected`. Backend errors never leave the backend module.
//!
//! Committed events leave a backend only through its `CommitListener`.

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::{
    conversation::{
        Access, Conversation, ConversationPatch, ConversationView, Notify, Participant, ParticipantSettings,
    },
    event::{Event, Logged, UserEvent},
    filter::{ConversationFilter, FilterSubject},
    ids::{AppId, ConversationId, MessageId, Seq, UserId},
    message::{ImportedMessage, Message, MessageEdit, MessageView, NewMessage},
    reaction::Emoji,
    user::{User, UserPatch},
    Actor, Millis, Rejection,
};

pub mod log;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use log::{LoggedEvent, Position, Retention};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store could not do its work (I/O, corruption, shutdown). The write did not happen.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A page of a list ordered by id or by sequence: at most `limit` items after the `starting_after` item.
#[derive(Clone, Debug)]
pub struct Page {
    pub limit: usize,
    pub starting_after: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderBy {
    LastActivity,
    CreatedAt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// A conversation listing (app-wide or one user's), per seed 001.
#[derive(Clone, Debug)]
pub struct ConversationQuery {
    pub limit: usize,
    pub starting_after: Option<ConversationId>,
    pub offset_ts: Option<Millis>,
    pub order_by: OrderBy,
    pub direction: Direction,
    pub last_message_before: Option<Millis>,
    pub last_message_after: Option<Millis>,
    pub filter: Option<ConversationFilter>,
    pub unreads_only: bool,
}

impl ConversationQuery {
    /// The first `limit`, most recent activity first, unfiltered.
    pub fn latest(limit: usize) -> Self {
        Self {
            limit,
            starting_after: None,
            offset_ts: None,
            order_by: OrderBy::LastActivity,
            direction: Direction::Desc,
            last_message_before: None,
            last_message_after: None,
            filter: None,
            unreads_only: false,
        }
    }
}

/// One entry of `GET /users/{id}/conversations`: the conversation and that user's participation.
#[derive(Clone, Debug)]
pub struct UserConversation {
    pub view: ConversationView,
    pub participant: Participant,
}

/// What a conversation subscription shows its user: the conversation, their participation (with the unread
/// count), the newest message, and the read markers as times (`readUntil`: the newest message the user has read;
/// `everyoneReadUntil`: the same for the participant furthest behind; 0 before any).
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationState {
    /// `last_seq` is left at 0: every event moves it, and a state that differs only there is no change to show.
    pub conversation: Conversation,
    pub participant: Participant,
    pub last_message: Option<MessageView>,
    pub read_until: Millis,
    pub everyone_read_until: Millis,
}

/// A user's conversation list as `subscribeConversations` shows it: the `limit` most recently active (the later
/// of the last message and the join) that match the filter, newest first, each as the user sees it; `loaded_all`
/// when no other matching one is left. `member_of` is every conversation the user takes part in, matching or not:
/// activity in any of them may change the list.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationListPage {
    pub conversations: Vec<ConversationState>,
    pub loaded_all: bool,
    pub member_of: Vec<ConversationId>,
}

impl ConversationState {
    /// When a conversation list sorts it: the later of its last activity (the last message, else its creation) and
    /// the user's join.
    pub fn activity_at(&self) -> Millis {
        self.conversation.last_activity_at().max(self.participant.joined_at)
    }

    pub fn filter_subject(&self) -> FilterSubject<'_> {
        FilterSubject { conversation: &self.conversation, participant: Some(&self.participant) }
    }
}

/// One participant as a participants subscription shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticipantEntry {
    pub user: User,
    pub access: Access,
    pub notify: Notify,
    pub joined_at: Millis,
}

/// The most recently joined participants, newest first; `loaded_all` when no other is left.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticipantsPage {
    pub participants: Vec<ParticipantEntry>,
    pub loaded_all: bool,
}

#[derive(Clone, Debug)]
pub struct NewFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Bytes,
}

#[derive(Clone, Debug)]
pub struct StoredFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Bytes,
}

/// An uploaded file: `id` is public (it names the URL), `token` is what a message sends as `attachmentToken`.
#[derive(Clone, Debug)]
pub struct FileReceipt {
    pub id: String,
    pub token: String,
}

/// What a subscription reads: the messages (expanded for snapshots) as of `seq`, the conversation's latest event.
/// `participant` is false when the user does not take part (or the conversation does not exist): then there are
/// no messages, and the snapshot is null.
#[derive(Clone, Debug)]
pub struct MessageWindow {
    pub seq: Seq,
    pub participant: bool,
    pub messages: Vec<MessageView>,
    /// No message older than the last one returned exists.
    pub loaded_all: bool,
}

/// A conversation's newest window and, when it exists and has at most the participants asked for, who takes
/// part in it: what the node's window cache needs to answer the next subscriber without a read.
#[derive(Clone, Debug)]
pub struct NewestWindow {
    /// With `participants`, the window as any participant sees it, whoever asked; without, what the user who
    /// asked sees.
    pub window: MessageWindow,
    pub participants: Option<Vec<UserId>>,
}

impl NewestWindow {
    /// What `user` sees of it: `message_window`'s answer.
    pub fn into_window_for(self, user: &UserId) -> MessageWindow {
        match &self.participants {
            Some(participants) if !participants.contains(user) => {
                MessageWindow { seq: self.window.seq, participant: false, messages: Vec::new(), loaded_all: true }
            }
            _ => self.window,
        }
    }
}

/// The outcome of a send: one id per item, in order, and the events of the messages actually created (an
/// idempotent retry creates none).
#[derive(Clone, Debug)]
pub struct Appended {
    pub ids: Vec<MessageId>,
    pub events: Vec<Event>,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A webhook event that was retried for as long as configured and never acknowledged.
#[derive(Clone, Debug)]
pub struct WebhookFailure {
    pub event_id: String,
    pub kind: &'static str,
    pub attempts: u32,
    pub last_error: String,
    pub failed_at: Millis,
}

/// The events of one committed write, as the log holds them, handed to the listener in commit order. Publishing
/// from the commit (not from the request handler) means an event is published even when the caller has gone.
#[derive(Clone, Debug)]
pub struct Committed {
    pub app: AppId,
    pub events: Vec<LoggedEvent<Logged>>,
}

/// What a store tells about every commit, right after it and before it answers anyone.
///
/// Calls come in commit order, and every event carries what is needed to check that order rather than assume it:
/// its conversation's `seq` (which grows by one per event of that conversation) and its log `position` (which
/// grows across all of them). `committed` must not block: the writer waits for it.
pub trait CommitListener: Send + Sync + 'static {
    fn committed(&self, committed: &Committed);
}

/// Several listeners, told in order.
impl CommitListener for Vec<std::sync::Arc<dyn CommitListener>> {
    fn committed(&self, committed: &Committed) {
        for listener in self {
            listener.committed(committed);
        }
    }
}

/// Told the duration and the number of writes of every group commit (for metrics).
pub type CommitObserver = std::sync::Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// What a store calls back into.
#[derive(Clone, Default)]
pub struct StoreHooks {
    pub listener: Option<std::sync::Arc<dyn CommitListener>>,
    pub observe_commit: Option<CommitObserver>,
}

/// Where the store keeps its data, and what it keeps of the event log.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The embedded backend's directory (SQLite's database file).
    pub data_dir: std::path::PathBuf,
    /// A PostgreSQL URL (`postgres://user:password@host:port/db`): the shared backend several nodes use. Without
    /// it, SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub retention: Retention,
}

/// Opens the configured backend, creating and migrating its schema as needed. The only place that names a
/// backend: the rest of the gateway holds an `Arc<dyn Store>`.
pub async fn open(config: &StoreConfig, hooks: StoreHooks) -> StoreResult<std::sync::Arc<dyn Store>> {
    let config = config.clone();
    let store = tokio::task::spawn_blocking(move || open_backend(&config, hooks))
        .await
        .map_err(|error| StoreError::Unavailable(format!("store open task failed: {error}")))??;
    Ok(store)
}

/// Makes a new app's `(id, secret)`.
pub type CreateApp = Box<dyn FnOnce() -> (String, String) + Send>;

/// The apps a shared database holds, `(id, secret)`, creating the one `create` makes when it holds none (if
/// given); says whether it was just created. For nodes that are not given their apps (`NATTER_APPS`).
pub async fn load_or_create_shared_apps(
    database_url: &str,
    create: Option<CreateApp>,
    now: Millis,
) -> StoreResult<(Vec<(String, String)>, bool)> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        #[cfg(feature = "postgres")]
        {
            postgres::load_or_create_apps(&url, create, now)
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (url, create, now);
            Err(StoreError::Unavailable("the PostgreSQL backend is not compiled in (the \"postgres\" feature)".into()))
        }
    })
    .await
    .map_err(|error| StoreError::Unavailable(format!("app loading task failed: {error}")))?
}

fn open_backend(config: &StoreConfig, hooks: StoreHooks) -> StoreResult<std::sync::Arc<dyn Store>> {
    match config.database_url.as_deref() {
        #[cfg(feature = "postgres")]
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(std::sync::Arc::new(postgres::open(url, config, hooks)?))
        }
        Some(url) => Err(StoreError::Unavailable(format!(
            "unsupported database URL {:?}: expected postgres://... (with the \"postgres\" feature)",
            url.split('@').next_back().unwrap_or_default()
        ))),
        #[cfg(feature = "sqlite")]
        None => Ok(std::sync::Arc::new(sqlite::open(config, hooks)?)),
        #[cfg(not(feature = "sqlite"))]
        None => {
            let _ = hooks;
            Err(StoreError::Unavailable("no embedded store is compiled in (enable the \"sqlite\" feature)".into()))
        }
    }
}

/// The events a write's result carries.
pub trait HasEvents {
    /// Its conversations' events.
    fn events(&self) -> &[Event];
    /// Everything it logs, conversations' and users' events, in the order they happened.
    fn logged(&self) -> Vec<Logged> {
        self.events().iter().cloned().map(Logged::Conversation).collect()
    }
}

impl HasEvents for Vec<UserEvent> {
    fn events(&self) -> &[Event] {
        &[]
    }

    fn logged(&self) -> Vec<Logged> {
        self.iter().cloned().map(Logged::User).collect()
    }
}

impl HasEvents for Option<UserEvent> {
    fn events(&self) -> &[Event] {
        &[]
    }

    fn logged(&self) -> Vec<Logged> {
        self.iter().cloned().map(Logged::User).collect()
    }
}

impl HasEvents for Event {
    fn events(&self) -> &[Event] {
        std::slice::from_ref(self)
    }
}

impl HasEvents for Option<Event> {
    fn events(&self) -> &[Event] {
        self.as_slice()
    }
}

impl HasEvents for Vec<Event> {
    fn events(&self) -> &[Event] {
        self
    }
}

impl HasEvents for Appended {
    fn events(&self) -> &[Event] {
        &self.events
    }
}

impl HasEvents for () {
    fn events(&self) -> &[Event] {
        &[]
    }
}

impl HasEvents for bool {
    fn events(&self) -> &[Event] {
        &[]
    }
}

impl HasEvents for Option<i64> {
    fn events(&self) -> &[Event] {
        &[]
    }
}

impl HasEvents for FileReceipt {
    fn events(&self) -> &[Event] {
        &[]
    }
}

/// The store seam. `Arc<dyn Store>` lives in `AppState`; SQLite implements it today, PostgreSQL can later.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers once the store can read and write.
    async fn check(&self) -> StoreResult<()>;

    /// Creates or patches users, all or nothing. A user that does not exist yet needs a name.
    async fn upsert_users(&self, app: &AppId, users: Vec<(UserId, UserPatch)>, now: Millis) -> StoreResult<()>;
    async fn user(&self, app: &AppId, id: &UserId) -> StoreResult<Option<User>>;
    /// A user's stream's latest `seq` (`Seq(0)` before its first event), then the user: read in that order, so the
    /// user is as of that `seq` or newer.
    async fn user_state(&self, app: &AppId, id: &UserId) -> StoreResult<(Seq, Option<User>)>;
    async fn users(&self, app: &AppId, page: Page) -> StoreResult<Vec<User>>;
    /// The user, if they take part in the conversation (and it exists).
    async fn participant_user(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<User>>;
    /// The conversation as `user` sees it, in one snapshot; `None` when they do not take part.
    async fn conversation_state(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<ConversationState>>;
    /// The user's conversation list, in one snapshot (empty while the user does not exist).
    async fn conversation_list_state(
        &self,
        app: &AppId,
        user: &UserId,
        limit: usize,
        filter: Option<std::sync::Arc<ConversationFilter>>,
    ) -> StoreResult<ConversationListPage>;
    /// Several conversations as `user` sees them, in one snapshot (`None` for those they do not take part in).
    async fn conversation_states(
        &self,
        app: &AppId,
        user: &UserId,
        conversations: Vec<ConversationId>,
    ) -> StoreResult<Vec<(ConversationId, Option<ConversationState>)>>;
    /// The `limit` most recently joined participants, in one snapshot; `None` when `user` does not take part.
    async fn participants_page(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        limit: usize,
    ) -> StoreResult<Option<ParticipantsPage>>;
    async fn user_conversations(
        &self,
        app: &AppId,
        user: &UserId,
        query: ConversationQuery,
    ) -> StoreResult<Vec<UserConversation>>;

    /// Creates or merges a conversation; `patch.participants` are added with default settings.
    async fn upsert_conversation(
        &self,
        app: &AppId,
        id: &ConversationId,
        patch: ConversationPatch,
        now: Millis,
    ) -> StoreResult<Vec<Event>>;
    async fn conversation(&self, app: &AppId, id: &ConversationId) -> StoreResult<Option<ConversationView>>;
    async fn conversations(&self, app: &AppId, query: ConversationQuery) -> StoreResult<Vec<ConversationView>>;
    async fn delete_conversation(&self, app: &AppId, id: &ConversationId) -> StoreResult<Event>;

    /// Joins a user (or overwrites their settings, defaults for what is not given).
    async fn put_participant(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        settings: ParticipantSettings,
        now: Millis,
    ) -> StoreResult<Option<Event>>;
    /// Changes the given settings of an existing participant.
    async fn patch_participant(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        settings: ParticipantSettings,
    ) -> StoreResult<Option<Event>>;
    /// Removes a participant; removing one who is not there changes nothing.
    async fn remove_participant(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<Event>>;
    /// `Some(true)` marks unread, `Some(false)` marks the conversation and all its messages read.
    async fn set_read_state(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        is_unread: Option<bool>,
    ) -> StoreResult<()>;

    /// Appends a batch of messages in one transaction, all or nothing.
    async fn append_messages(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> StoreResult<Appended>;
    /// Imports messages in one transaction, all or nothing: they go after every message there, in time order
    /// (`domain::message::check_import_times`), each with an event that open windows do not show
    /// (`MessageImported`); ids in the order given.
    async fn import_messages(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        messages: Vec<ImportedMessage>,
        now: Millis,
    ) -> StoreResult<Appended>;
    async fn message(&self, app: &AppId, conversation: &ConversationId, id: &MessageId)
        -> StoreResult<Option<Message>>;
    /// A page of `user`'s message window, newest first, read at one consistent `seq`: the newest `limit`
    /// messages, or the `limit` before `before`.
    async fn message_window(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        before: Option<Seq>,
        limit: usize,
    ) -> StoreResult<MessageWindow>;
    /// `user`'s newest `limit` messages, as `message_window` reads them, and the conversation's participants if
    /// it exists and has at most `max_participants`.
    async fn newest_window(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        user: &UserId,
        limit: usize,
        max_participants: usize,
    ) -> StoreResult<NewestWindow>;
    /// Newest first.
    async fn messages(&self, app: &AppId, conversation: &ConversationId, page: Page) -> StoreResult<Vec<Message>>;
    /// Edits a message; a user may edit only their own.
    async fn edit_message(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        id: &MessageId,
        edit: MessageEdit,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Event>;
    /// Deletes a message; a user may delete only their own, and a user's delete of a missing message succeeds
    /// with no event.
    async fn delete_message(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        id: &MessageId,
        actor: &Actor,
    ) -> StoreResult<Option<Event>>;
    async fn delete_all_messages(&self, app: &AppId, conversation: &ConversationId) -> StoreResult<Event>;

    /// Adds a reaction; adding one that exists changes nothing and returns no event.
    async fn add_reaction(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        message: &MessageId,
        emoji: &Emoji,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<Option<Event>>;
    async fn remove_reaction(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        message: &MessageId,
        emoji: &Emoji,
        user: &UserId,
    ) -> StoreResult<Option<Event>>;

    async fn put_file(&self, app: &AppId, file: NewFile, now: Millis) -> StoreResult<FileReceipt>;
    async fn file(&self, app: &AppId, id: &str) -> StoreResult<Option<StoredFile>>;

    /// The logged events of one conversation with `after < seq <= up_to`, in `seq` order. Events the retention
    /// policy has pruned are missing: the caller checks that the run is whole.
    async fn conversation_events(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        after: Seq,
        up_to: Seq,
    ) -> StoreResult<Vec<LoggedEvent>>;
    /// At most `limit` logged events of an app after `after`, in commit order. A reader that saw position P has
    /// seen every event committed before it: positions never appear out of order.
    async fn app_events(&self, app: &AppId, after: Position, limit: usize) -> StoreResult<Vec<LoggedEvent<Logged>>>;
    /// The position of the app's newest logged event (`Position(0)` before the first): where a reader that wants
    /// only what comes next starts.
    async fn latest_position(&self, app: &AppId) -> StoreResult<Position>;
    /// At most `limit` messages with `after < seq <= up_to`, oldest first (those still there).
    async fn messages_between(
        &self,
        app: &AppId,
        conversation: &ConversationId,
        after: Seq,
        up_to: Seq,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;

    /// Claims webhook delivery to `url` for `owner` until `lease_until` and says where it stands: `start` for a
    /// receiver never seen before (it gets what comes next, not the past). `None` while another owner's lease
    /// runs, unless `take_over` (one node: a lease left by this node's previous run).
    #[allow(clippy::too_many_arguments, reason = "a lease has this many parts")]
    async fn claim_webhook(
        &self,
        app: &AppId,
        url: &str,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        start: Position,
        take_over: bool,
    ) -> StoreResult<Option<Position>>;
    /// Records that the receiver has had every event up to `position`, and renews the lease; `false` when
    /// `owner` no longer holds it (another node took it over).
    async fn save_webhook_position(
        &self,
        app: &AppId,
        url: &str,
        owner: &str,
        position: Position,
        lease_until: Millis,
    ) -> StoreResult<bool>;
    /// Records a webhook event that delivery gave up on.
    async fn record_webhook_failure(&self, app: &AppId, url: &str, failure: WebhookFailure) -> StoreResult<()>;

    /// Applies the retention policy as of `now`; returns how many events were pruned. Backends also run it on
    /// their own from time to time.
    async fn prune_events(&self, now: Millis) -> StoreResult<u64>;
}

#[cfg(all(test, feature = "sqlite"))]
mod contract;
