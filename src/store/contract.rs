//! The store contract: what every backend must do, one suite for all of them. Each case is a function of an
//! `Opener`, which opens a fresh, empty store of one backend and records what its `CommitListener` receives;
//! `contract!` runs every case against every backend: SQLite in a temporary directory always, and a further
//! backend once one exists (PostgreSQL, when `NATTER_TEST_POSTGRES_URL` is set, skipped by that variable).

use std::sync::{Arc, Mutex};

use super::*;
use crate::domain::{
    content::Links,
    conversation::{Access, ConversationPatch, Notify},
    event::{EventKind, Logged, UserEvent, UserEventKind},
    ids::Seq,
    message::{MessageBody, MessageType, Origin},
    Custom, Field,
};

/// Records every committed event, in the order the store hands them over.
#[derive(Default)]
struct Recorder(Mutex<Vec<LoggedEvent<Logged>>>);

impl CommitListener for Recorder {
    fn committed(&self, committed: &Committed) {
        assert!(committed.events.iter().all(|logged| logged.app == committed.app));
        self.0.lock().unwrap().extend(committed.events.iter().cloned());
    }
}

impl Recorder {
    /// The conversations' events told so far.
    fn take(&self) -> Vec<LoggedEvent> {
        self.take_all().into_iter().filter_map(LoggedEvent::into_conversation).collect()
    }

    fn take_all(&self) -> Vec<LoggedEvent<Logged>> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// An open store with its recorder.
struct Backend {
    store: Arc<dyn Store>,
    committed: Arc<Recorder>,
    _place: Place,
}

/// Where a backend under test keeps its data: a fresh one for every case.
enum Place {
    Dir(tempfile::TempDir),
    /// A database URL whose `search_path` names a schema of its own.
    #[cfg(feature = "postgres")]
    Url(String),
}

#[derive(Clone, Copy)]
enum Opener {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// The PostgreSQL server the suite runs against (`.ci/services start` prints it).
#[cfg(feature = "postgres")]
const POSTGRES_URL_VARIABLE: &str = "NATTER_TEST_POSTGRES_URL";

impl Opener {
    async fn open(self) -> Backend {
        self.open_with(Retention::default()).await
    }

    async fn open_with(self, retention: Retention) -> Backend {
        let place = self.new_place().await;
        let committed = Arc::new(Recorder::default());
        let store = Self::open_at(&place, retention, committed.clone()).await;
        Backend { store, committed, _place: place }
    }

    async fn new_place(self) -> Place {
        match self {
            Opener::Sqlite => Place::Dir(tempfile::tempdir().unwrap()),
            #[cfg(feature = "postgres")]
            Opener::Postgres => {
                let base = std::env::var(POSTGRES_URL_VARIABLE).unwrap();
                Place::Url(tokio::task::spawn_blocking(move || fresh_schema(&base)).await.unwrap())
            }
        }
    }

    async fn open_at(place: &Place, retention: Retention, committed: Arc<Recorder>) -> Arc<dyn Store> {
        let hooks = StoreHooks { listener: Some(committed), observe_commit: None };
        let config = match place {
            Place::Dir(dir) => StoreConfig { data_dir: dir.path().to_owned(), database_url: None, retention },
            #[cfg(feature = "postgres")]
            Place::Url(url) => {
                StoreConfig { data_dir: std::env::temp_dir(), database_url: Some(url.clone()), retention }
            }
        };
        open(&config, hooks).await.unwrap()
    }
}

/// Creates an empty schema and returns a URL whose connections use it.
#[cfg(feature = "postgres")]
fn fresh_schema(base: &str) -> String {
    let schema = format!("contract_{}", crate::domain::ids::random_base62(12).to_lowercase());
    let mut client = ::postgres::Client::connect(base, ::postgres::NoTls).unwrap();
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Opener::Sqlite).await
                }
            )*
        }
        /// Runs where `NATTER_TEST_POSTGRES_URL` names a server (CI starts one); says so where it does not.
        #[cfg(feature = "postgres")]
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if std::env::var_os(super::POSTGRES_URL_VARIABLE).is_none() {
                        eprintln!("skipped: {} is not set", super::POSTGRES_URL_VARIABLE);
                        return;
                    }
                    super::$case(super::Opener::Postgres).await
                }
            )*
        }
    };
}

contract!(
    the_store_answers_its_check,
    users_are_created_patched_listed_and_a_batch_is_all_or_nothing,
    conversations_are_created_merged_listed_and_deleted,
    a_deleted_and_recreated_conversation_never_reuses_a_sequence_number,
    participants_join_change_and_leave_with_one_event_each,
    read_state_moves_with_reads_and_sends,
    every_event_takes_the_next_sequence_number_of_its_conversation,
    sends_follow_the_participation_rules_and_a_rejected_batch_changes_nothing,
    an_idempotency_key_names_its_message_and_creates_nothing_the_second_time,
    message_windows_page_back_to_the_first_message_and_are_null_for_non_participants,
    users_change_only_their_own_messages,
    reactions_are_idempotent_capped_and_made_by_participants,
    files_are_stored_attached_once_and_read_back,
    every_committed_event_is_logged_and_reaches_the_listener_in_commit_order,
    the_log_reads_a_conversation_by_seq_and_an_app_after_a_position,
    the_log_outlives_a_restart,
    pruning_keeps_the_newest_events_of_each_conversation_and_never_reuses_a_position,
    pruning_by_age_drops_what_is_older_than_the_retention,
    concurrent_writes_get_unique_contiguous_seqs_and_a_rejected_one_changes_nothing,
    users_log_their_creation_and_every_change_on_their_own_stream,
    a_read_logs_how_far_the_marker_moved,
    a_deleted_message_is_logged_as_it_was,
    a_webhook_receiver_is_held_by_one_owner_until_its_lease_lapses,
    pruning_keeps_what_a_live_webhook_receiver_has_not_had,
    live_states_show_a_conversation_its_participants_and_a_list_as_one_user_sees_them,
    unread_counts_follow_sends_reads_deletes_imports_and_rejoins,
);

fn app() -> AppId {
    AppId::parse("app").unwrap()
}

fn conversation() -> ConversationId {
    ConversationId::parse("c").unwrap()
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn alice() -> UserId {
    user("alice")
}

fn named(name: &str) -> UserPatch {
    UserPatch { name: Some(name.into()), ..Default::default() }
}

fn text(sender: Option<UserId>, text: &str) -> NewMessage {
    NewMessage {
        kind: if sender.is_some() { MessageType::UserMessage } else { MessageType::SystemMessage },
        sender_id: sender,
        body: MessageBody::Text(text.into()),
        links: Links::Allowed,
        custom: Custom::new(),
        referenced_message_id: None,
        idempotency_key: None,
        origin: Origin::Rest,
    }
}

fn query() -> ConversationQuery {
    ConversationQuery::latest(10)
}

fn seqs(events: &[Event]) -> Vec<i64> {
    events.iter().map(|event| event.seq.0).collect()
}

/// A store with alice, bob and carol, and conversation `c` with alice and bob (events 1 to 3).
async fn with_conversation(opener: Opener) -> Backend {
    with_conversation_retained(opener, Retention::default()).await
}

async fn with_conversation_retained(opener: Opener, retention: Retention) -> Backend {
    let backend = opener.open_with(retention).await;
    let users = vec![(alice(), named("Alice")), (user("bob"), named("Bob")), (user("carol"), named("Carol"))];
    backend.store.upsert_users(&app(), users, 1).await.unwrap();
    let patch = ConversationPatch { participants: vec![alice(), user("bob")], ..Default::default() };
    let events = backend.store.upsert_conversation(&app(), &conversation(), patch, 2).await.unwrap();
    assert_eq!(seqs(&events), vec![1, 2, 3], "creation and the two joins are the first events");
    backend
}

async fn the_store_answers_its_check(opener: Opener) {
    let backend = opener.open().await;
    backend.store.check().await.unwrap();
}

async fn users_are_created_patched_listed_and_a_batch_is_all_or_nothing(opener: Opener) {
    let Backend { store, .. } = &opener.open().await;
    store.upsert_users(&app(), vec![(alice(), named("Alice"))], 10).await.unwrap();
    let patch = UserPatch { photo_url: Field::Set("https://example.com/a.png".into()), ..Default::default() };
    store.upsert_users(&app(), vec![(alice(), patch)], 11).await.unwrap();
    let stored = store.user(&app(), &alice()).await.unwrap().unwrap();
    assert_eq!((stored.name.as_str(), stored.photo_url.as_deref()), ("Alice", Some("https://example.com/a.png")));
    assert_eq!(stored.created_at, 10, "a patch keeps the creation time");
    // A new user without a name refuses the whole batch.
    let batch = vec![(user("bob"), named("Bob")), (user("nameless"), UserPatch::default())];
    assert!(matches!(store.upsert_users(&app(), batch, 12).await, Err(StoreError::Rejected(_))));
    assert!(store.user(&app(), &user("bob")).await.unwrap().is_none());
    store.upsert_users(&app(), vec![(user("bob"), named("Bob")), (user("carol"), named("Carol"))], 13).await.unwrap();
    let first = store.users(&app(), Page { limit: 2, starting_after: None }).await.unwrap();
    let ids: Vec<_> = first.iter().map(|user| user.id.to_string()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    let rest = store.users(&app(), Page { limit: 2, starting_after: Some("bob".into()) }).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(store.user(&AppId::parse("other").unwrap(), &alice()).await.unwrap().is_none(), "apps are apart");
}

async fn conversations_are_created_merged_listed_and_deleted(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let patch = ConversationPatch { subject: Field::Set("Boots".into()), ..Default::default() };
    let events = store.upsert_conversation(&app(), &conversation(), patch, 3).await.unwrap();
    assert!(matches!(events[..], [Event { kind: EventKind::ConversationUpdated, seq: Seq(4), .. }]));
    let view = store.conversation(&app(), &conversation()).await.unwrap().unwrap();
    assert_eq!(view.conversation.subject.as_deref(), Some("Boots"));
    assert_eq!(view.participants.len(), 2, "a merge keeps the participants");
    let other = ConversationId::parse("d").unwrap();
    store.upsert_conversation(&app(), &other, ConversationPatch::default(), 4).await.unwrap();
    let listed: Vec<_> = store.conversations(&app(), query()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let mine = store.user_conversations(&app(), &alice(), query()).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].participant.user_id, alice());
    assert!(matches!(
        store.user_conversations(&app(), &user("nobody"), query()).await,
        Err(StoreError::Rejected(Rejection::UserNotFound(_)))
    ));
    let deleted = store.delete_conversation(&app(), &conversation()).await.unwrap();
    assert_eq!(deleted.seq, Seq(5));
    let EventKind::ConversationDeleted { conversation: Some(gone) } = deleted.kind else {
        panic!("{:?}", deleted.kind)
    };
    assert_eq!(gone.conversation.id, conversation(), "the log keeps what was deleted");
    assert!(store.conversation(&app(), &conversation()).await.unwrap().is_none());
    assert!(matches!(
        store.delete_conversation(&app(), &conversation()).await,
        Err(StoreError::Rejected(Rejection::ConversationNotFound(_)))
    ));
}

async fn a_deleted_and_recreated_conversation_never_reuses_a_sequence_number(opener: Opener) {
    let backend = with_conversation(opener).await;
    assert_eq!(backend.store.delete_conversation(&app(), &conversation()).await.unwrap().seq, Seq(4));
    let events =
        backend.store.upsert_conversation(&app(), &conversation(), ConversationPatch::default(), 9).await.unwrap();
    assert_eq!(events[0].seq, Seq(5));
}

async fn participants_join_change_and_leave_with_one_event_each(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let read_only = ParticipantSettings { access: Some(Access::Read), notify: None };
    let joined = store.put_participant(&app(), &conversation(), &user("carol"), read_only, 5).await.unwrap();
    assert!(matches!(
        joined.map(|event| event.kind),
        Some(EventKind::ParticipantJoined { access: Access::Read, notify: Notify::All, .. })
    ));
    assert!(store.put_participant(&app(), &conversation(), &user("carol"), read_only, 6).await.unwrap().is_none());
    let quiet = ParticipantSettings { access: None, notify: Some(Notify::None) };
    let changed = store.patch_participant(&app(), &conversation(), &user("carol"), quiet).await.unwrap();
    assert!(matches!(
        changed.map(|event| event.kind),
        Some(EventKind::ParticipantUpdated { access: Access::Read, notify: Notify::None, .. })
    ));
    // PUT overwrites what it does not name with the defaults.
    let put = store.put_participant(&app(), &conversation(), &user("carol"), Default::default(), 7).await.unwrap();
    assert!(matches!(
        put.map(|event| event.kind),
        Some(EventKind::ParticipantUpdated { access: Access::ReadWrite, notify: Notify::All, .. })
    ));
    assert!(matches!(
        store.patch_participant(&app(), &conversation(), &user("nobody"), quiet).await,
        Err(StoreError::Rejected(Rejection::ParticipantNotFound { .. }))
    ));
    let left = store.remove_participant(&app(), &conversation(), &user("carol")).await.unwrap();
    assert!(matches!(left.map(|event| event.kind), Some(EventKind::ParticipantLeft { .. })));
    assert!(store.remove_participant(&app(), &conversation(), &user("carol")).await.unwrap().is_none());
    assert!(matches!(
        store.put_participant(&app(), &conversation(), &user("nobody"), Default::default(), 8).await,
        Err(StoreError::Rejected(Rejection::UserNotFound(_)))
    ));
}

async fn read_state_moves_with_reads_and_sends(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    store.append_messages(&app(), &conversation(), vec![text(Some(alice()), "hi")], 5).await.unwrap();
    let bob_view = |store: Arc<dyn Store>| async move {
        let mine = store.user_conversations(&app(), &user("bob"), query()).await.unwrap();
        (mine[0].participant.is_unread, mine[0].participant.unread_message_count)
    };
    assert_eq!(bob_view(store.clone()).await, (true, 1));
    let alice_view = store.user_conversations(&app(), &alice(), query()).await.unwrap();
    assert!(!alice_view[0].participant.is_unread, "a sender has read their own message");
    store.set_read_state(&app(), &conversation(), &user("bob"), Some(false)).await.unwrap();
    assert_eq!(bob_view(store.clone()).await, (false, 0));
    store.set_read_state(&app(), &conversation(), &user("bob"), Some(true)).await.unwrap();
    assert_eq!(bob_view(store.clone()).await, (true, 0), "marked unread by hand");
    assert!(matches!(
        store.set_read_state(&app(), &conversation(), &user("carol"), Some(false)).await,
        Err(StoreError::Rejected(Rejection::ParticipantNotFound { .. }))
    ));
}

async fn every_event_takes_the_next_sequence_number_of_its_conversation(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let appended = store
        .append_messages(&app(), &conversation(), vec![text(Some(alice()), "a"), text(None, "b")], 3)
        .await
        .unwrap();
    assert_eq!(seqs(&appended.events), vec![4, 5]);
    let EventKind::MessageCreated { message } = &appended.events[0].kind else { panic!("not a create") };
    assert_eq!(message.message.seq, Seq(4), "a message carries the seq of the event that created it");
    assert_eq!(message.sender.as_ref().map(|sender| sender.name.as_str()), Some("Alice"));

    let id = &appended.ids[0];
    let edit =
        MessageEdit { text: Some(("a2".into(), Links::Allowed)), custom: None, clear_custom: false, mark_edited: true };
    assert_eq!(store.edit_message(&app(), &conversation(), id, edit, &Actor::App, 4).await.unwrap().seq, Seq(6));
    let emoji = Emoji::parse("👍").unwrap();
    let added = store.add_reaction(&app(), &conversation(), id, &emoji, &alice(), 5).await.unwrap();
    assert_eq!(added.unwrap().seq, Seq(7));
    let removed = store.remove_reaction(&app(), &conversation(), id, &emoji, &alice()).await.unwrap();
    assert_eq!(removed.unwrap().seq, Seq(8));
    assert_eq!(store.delete_message(&app(), &conversation(), id, &Actor::App).await.unwrap().unwrap().seq, Seq(9));
    let all = store.delete_all_messages(&app(), &conversation()).await.unwrap();
    assert_eq!((all.kind, all.seq), (EventKind::AllMessagesDeleted, Seq(10)));
    let page = Page { limit: 10, starting_after: None };
    assert!(store.messages(&app(), &conversation(), page).await.unwrap().is_empty());
}

async fn sends_follow_the_participation_rules_and_a_rejected_batch_changes_nothing(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let batch = vec![text(Some(alice()), "fine"), text(Some(user("carol")), "not a participant")];
    assert!(matches!(
        store.append_messages(&app(), &conversation(), batch, 3).await,
        Err(StoreError::Rejected(Rejection::NotAParticipant { ref field, .. })) if field == "[1].sender"
    ));
    let read_only = ParticipantSettings { access: Some(Access::Read), notify: None };
    store.put_participant(&app(), &conversation(), &user("carol"), read_only, 4).await.unwrap();
    assert!(matches!(
        store.append_messages(&app(), &conversation(), vec![text(Some(user("carol")), "x")], 5).await,
        Err(StoreError::Rejected(Rejection::ReadOnlyAccess { .. }))
    ));
    let page = Page { limit: 10, starting_after: None };
    assert!(store.messages(&app(), &conversation(), page).await.unwrap().is_empty());
    let nowhere = ConversationId::parse("nowhere").unwrap();
    assert!(matches!(
        store.append_messages(&app(), &nowhere, vec![text(None, "x")], 5).await,
        Err(StoreError::Rejected(Rejection::ConversationNotFound(_)))
    ));
}

async fn an_idempotency_key_names_its_message_and_creates_nothing_the_second_time(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let mut keyed = text(Some(alice()), "once");
    keyed.idempotency_key = Some("k1".into());
    let first = store.append_messages(&app(), &conversation(), vec![keyed.clone()], 10).await.unwrap();
    let again = store.append_messages(&app(), &conversation(), vec![keyed.clone()], 20).await.unwrap();
    assert_eq!(first.ids, again.ids);
    assert!(again.events.is_empty());
    // After 24 hours the key no longer names the message.
    let later = 10 + crate::domain::limits::IDEMPOTENCY_WINDOW_MS;
    let after_a_day = store.append_messages(&app(), &conversation(), vec![keyed], later).await.unwrap();
    assert_ne!(after_a_day.ids, first.ids);
    let page = Page { limit: 10, starting_after: None };
    assert_eq!(store.messages(&app(), &conversation(), page).await.unwrap().len(), 2);
}

async fn message_windows_page_back_to_the_first_message_and_are_null_for_non_participants(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let batch: Vec<_> = (0..5).map(|i| text(Some(alice()), &format!("m{i}"))).collect();
    let appended = store.append_messages(&app(), &conversation(), batch, 3).await.unwrap();
    let window = store.message_window(&app(), &conversation(), &user("bob"), None, 3).await.unwrap();
    assert!(window.participant && !window.loaded_all);
    assert_eq!(window.seq, Seq(8));
    let window_seqs: Vec<_> = window.messages.iter().map(|view| view.message.seq.0).collect();
    assert_eq!(window_seqs, [8, 7, 6]);
    let older = store.message_window(&app(), &conversation(), &user("bob"), Some(Seq(6)), 3).await.unwrap();
    assert!(older.loaded_all);
    assert_eq!(older.messages.len(), 2);
    let outsider = store.message_window(&app(), &conversation(), &user("carol"), None, 3).await.unwrap();
    assert!(!outsider.participant && outsider.messages.is_empty());
    // The newest window for the cache: the same page, the participants, and the messages even for an outsider.
    let newest = store.newest_window(&app(), &conversation(), &user("carol"), 3, 10).await.unwrap();
    let mut participants = newest.participants.clone().expect("two participants, at most ten asked for");
    participants.sort();
    assert_eq!(participants, [alice(), user("bob")]);
    let newest_seqs: Vec<_> = newest.window.messages.iter().map(|view| view.message.seq.0).collect();
    assert_eq!((newest.window.seq, newest_seqs, newest.window.participant), (Seq(8), vec![8, 7, 6], true));
    let carols = newest.clone().into_window_for(&user("carol"));
    assert!(!carols.participant && carols.messages.is_empty(), "what carol sees of it");
    assert_eq!(newest.into_window_for(&user("bob")).messages.len(), 3);
    let crowded = store.newest_window(&app(), &conversation(), &user("bob"), 3, 1).await.unwrap();
    assert!(crowded.participants.is_none() && crowded.window.participant && crowded.window.messages.len() == 3);
    let message = store.message(&app(), &conversation(), &appended.ids[0]).await.unwrap().unwrap();
    assert_eq!(message.text, "m0");
    assert_eq!(message.read_by, Vec::<UserId>::new(), "bob has not read it");
    let newest = store.messages(&app(), &conversation(), Page { limit: 2, starting_after: None }).await.unwrap();
    assert_eq!(newest[0].id, appended.ids[4]);
    let cursor = Some(newest[1].id.to_string());
    let next = store.messages(&app(), &conversation(), Page { limit: 10, starting_after: cursor }).await.unwrap();
    assert_eq!(next.len(), 3);
}

async fn users_change_only_their_own_messages(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let appended = store.append_messages(&app(), &conversation(), vec![text(Some(alice()), "a")], 3).await.unwrap();
    let id = &appended.ids[0];
    let edit =
        MessageEdit { text: Some(("b".into(), Links::Refused)), custom: None, clear_custom: false, mark_edited: true };
    let bob = Actor::User(user("bob"));
    assert!(matches!(
        store.edit_message(&app(), &conversation(), id, edit.clone(), &bob, 4).await,
        Err(StoreError::Rejected(Rejection::NotMessageOwner { .. }))
    ));
    assert!(matches!(
        store.delete_message(&app(), &conversation(), id, &bob).await,
        Err(StoreError::Rejected(Rejection::NotMessageOwner { .. }))
    ));
    let edited = store.edit_message(&app(), &conversation(), id, edit, &Actor::User(alice()), 5).await.unwrap();
    let EventKind::MessageEdited { message } = edited.kind else { panic!("not an edit") };
    assert_eq!((message.message.text.as_str(), message.message.edited_at), ("b", Some(5)));
    let missing = MessageId::parse("msg_missing").unwrap();
    assert!(store.delete_message(&app(), &conversation(), &missing, &bob).await.unwrap().is_none());
    assert!(matches!(
        store.delete_message(&app(), &conversation(), &missing, &Actor::App).await,
        Err(StoreError::Rejected(Rejection::MessageNotFound(_)))
    ));
    assert!(matches!(
        store.delete_message(&app(), &conversation(), &missing, &Actor::User(user("carol"))).await,
        Err(StoreError::Rejected(Rejection::NotAParticipant { .. }))
    ));
}

async fn reactions_are_idempotent_capped_and_made_by_participants(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let appended = store.append_messages(&app(), &conversation(), vec![text(None, "react")], 3).await.unwrap();
    let id = &appended.ids[0];
    let emoji = |i: usize| Emoji::parse(&format!(":e{i}:")).unwrap();
    for i in 0..crate::domain::reaction::MAX_DISTINCT_EMOJI_PER_MESSAGE {
        assert!(store.add_reaction(&app(), &conversation(), id, &emoji(i), &alice(), 4).await.unwrap().is_some());
    }
    assert!(store.add_reaction(&app(), &conversation(), id, &emoji(0), &alice(), 5).await.unwrap().is_none());
    assert!(store.add_reaction(&app(), &conversation(), id, &emoji(0), &user("bob"), 5).await.unwrap().is_some());
    assert!(matches!(
        store.add_reaction(&app(), &conversation(), id, &emoji(99), &alice(), 6).await,
        Err(StoreError::Rejected(Rejection::TooManyReactions { .. }))
    ));
    assert!(matches!(
        store.add_reaction(&app(), &conversation(), id, &emoji(0), &user("carol"), 6).await,
        Err(StoreError::Rejected(Rejection::NotAParticipant { .. }))
    ));
    let message = store.message(&app(), &conversation(), id).await.unwrap().unwrap();
    assert_eq!(message.reactions[0].users, vec![alice(), user("bob")]);
    assert!(store.remove_reaction(&app(), &conversation(), id, &emoji(1), &user("bob")).await.unwrap().is_none());
    // A user who left can no longer remove their reaction: reactions, like every write, need participation.
    store.remove_participant(&app(), &conversation(), &user("bob")).await.unwrap();
    assert!(matches!(
        store.remove_reaction(&app(), &conversation(), id, &emoji(0), &user("bob")).await,
        Err(StoreError::Rejected(Rejection::NotAParticipant { .. }))
    ));
}

async fn files_are_stored_attached_once_and_read_back(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let file = NewFile {
        filename: "photo.png".into(),
        content_type: "image/png".into(),
        bytes: Bytes::from_static(b"\x89PNG"),
    };
    let receipt = store.put_file(&app(), file, 3).await.unwrap();
    let stored = store.file(&app(), &receipt.id).await.unwrap().unwrap();
    assert_eq!((stored.filename.as_str(), stored.bytes.as_ref()), ("photo.png", &b"\x89PNG"[..]));
    assert!(store.file(&AppId::parse("other").unwrap(), &receipt.id).await.unwrap().is_none());
    let mut attached = text(Some(alice()), "");
    attached.body = MessageBody::Attachment { token: receipt.token.clone() };
    let appended = store.append_messages(&app(), &conversation(), vec![attached.clone()], 4).await.unwrap();
    let message = store.message(&app(), &conversation(), &appended.ids[0]).await.unwrap().unwrap();
    assert_eq!(message.attachment.map(|file| file.file_id), Some(receipt.id));
    assert!(
        matches!(store.append_messages(&app(), &conversation(), vec![attached], 5).await, Err(StoreError::Rejected(_))),
        "a token attaches one message only"
    );
}

async fn every_committed_event_is_logged_and_reaches_the_listener_in_commit_order(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    store.append_messages(&app(), &conversation(), vec![text(None, "a"), text(None, "b")], 3).await.unwrap();
    // A rejected write commits nothing, so nothing reaches the listener or the log.
    let _ = store.append_messages(&app(), &conversation(), vec![text(Some(user("carol")), "x")], 4).await;
    let received = backend.committed.take();
    let received_seqs: Vec<_> = received.iter().map(|logged| logged.event.seq.0).collect();
    assert_eq!(received_seqs, [1, 2, 3, 4, 5]);
    assert!(received.windows(2).all(|pair| pair[0].position < pair[1].position), "positions grow");
    let logged = store.conversation_events(&app(), &conversation(), Seq(0), Seq(100)).await.unwrap();
    assert_eq!(logged, received, "the log holds exactly what the listener was told");
    let EventKind::MessageCreated { message } = &logged[3].event.kind else { panic!("not a create") };
    assert_eq!(message.message.text, "a", "the log keeps what the frame needs");
}

async fn the_log_reads_a_conversation_by_seq_and_an_app_after_a_position(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let other = ConversationId::parse("d").unwrap();
    store.upsert_conversation(&app(), &other, ConversationPatch::default(), 3).await.unwrap();
    let other_app = AppId::parse("other").unwrap();
    store.upsert_conversation(&other_app, &conversation(), ConversationPatch::default(), 3).await.unwrap();
    store.append_messages(&app(), &conversation(), vec![text(None, "a")], 4).await.unwrap();
    let run = store.conversation_events(&app(), &conversation(), Seq(1), Seq(3)).await.unwrap();
    assert_eq!(run.iter().map(|logged| logged.event.seq.0).collect::<Vec<_>>(), [2, 3]);
    let everything = store.app_events(&app(), Position(0), 100).await.unwrap();
    assert_eq!(user_events(&everything).len(), 3, "the users' creation comes first");
    let everything: Vec<_> = everything.into_iter().filter_map(LoggedEvent::into_conversation).collect();
    let order: Vec<_> = everything.iter().map(|l| (l.event.conversation_id.to_string(), l.event.seq.0)).collect();
    assert_eq!(order, [("c".into(), 1), ("c".into(), 2), ("c".into(), 3), ("d".into(), 1), ("c".into(), 4)]);
    assert!(everything.iter().all(|logged| logged.app == app()), "another app's events are not read");
    let after = store.app_events(&app(), everything[2].position, 1).await.unwrap();
    assert_eq!(after.into_iter().filter_map(LoggedEvent::into_conversation).collect::<Vec<_>>(), everything[3..4]);
    assert!(store.app_events(&app(), everything[4].position, 10).await.unwrap().is_empty());
    assert_eq!(store.latest_position(&app()).await.unwrap(), everything[4].position);
    let other = AppId::parse("nobody").unwrap();
    assert_eq!(store.latest_position(&other).await.unwrap(), Position(0));
}

async fn the_log_outlives_a_restart(opener: Opener) {
    let place = opener.new_place().await;
    let store = Opener::open_at(&place, Retention::default(), Arc::default()).await;
    store.upsert_conversation(&app(), &conversation(), ConversationPatch::default(), 1).await.unwrap();
    store.append_messages(&app(), &conversation(), vec![text(None, "kept")], 2).await.unwrap();
    drop(store);
    let store = Opener::open_at(&place, Retention::default(), Arc::default()).await;
    let logged = store.conversation_events(&app(), &conversation(), Seq(0), Seq(2)).await.unwrap();
    assert_eq!(logged.len(), 2);
}

async fn pruning_keeps_the_newest_events_of_each_conversation_and_never_reuses_a_position(opener: Opener) {
    let retention = Retention { max_events_per_conversation: 3, ..Retention::default() };
    let backend = with_conversation_retained(opener, retention).await;
    let store = &backend.store;
    let batch: Vec<_> = (0..5).map(|i| text(None, &format!("m{i}"))).collect();
    store.append_messages(&app(), &conversation(), batch, 3).await.unwrap();
    let newest_position = backend.committed.take().last().unwrap().position;
    assert_eq!(store.prune_events(4).await.unwrap(), 5);
    let kept = store.conversation_events(&app(), &conversation(), Seq(0), Seq(100)).await.unwrap();
    assert_eq!(kept.iter().map(|logged| logged.event.seq.0).collect::<Vec<_>>(), [6, 7, 8]);
    assert_eq!(store.prune_events(5).await.unwrap(), 0, "nothing written since");
    store.append_messages(&app(), &conversation(), vec![text(None, "later")], 6).await.unwrap();
    assert!(backend.committed.take()[0].position > newest_position);
}

async fn pruning_by_age_drops_what_is_older_than_the_retention(opener: Opener) {
    let retention = Retention { max_age: std::time::Duration::from_secs(60), ..Retention::default() };
    let backend = with_conversation_retained(opener, retention).await;
    let store = &backend.store;
    let committed = backend.committed.take();
    let committed_at = committed[0].committed_at;
    assert_eq!(store.prune_events(committed_at + 59_000).await.unwrap(), 0);
    // All six (three users', three of the conversation) are too old, but the newest event of the log stays:
    // positions go on from it.
    assert_eq!(store.prune_events(committed_at + 61_000).await.unwrap(), 5);
    let kept: Vec<_> = store.app_events(&app(), Position(0), 100).await.unwrap();
    let kept: Vec<_> = kept.into_iter().filter_map(LoggedEvent::into_conversation).collect();
    assert_eq!(kept, committed[2..]);
    store.append_messages(&app(), &conversation(), vec![text(None, "later")], 6).await.unwrap();
    assert!(backend.committed.take()[0].position > committed[2].position, "a position is never reused");
}

async fn concurrent_writes_get_unique_contiguous_seqs_and_a_rejected_one_changes_nothing(opener: Opener) {
    let backend = with_conversation(opener).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = backend.store.clone();
        let sender = if i % 10 == 0 { user("stranger") } else { alice() };
        tasks.push(tokio::spawn(async move {
            store.append_messages(&app(), &conversation(), vec![text(Some(sender), &format!("m{i}"))], 10).await
        }));
    }
    let mut written = Vec::new();
    let mut rejected = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(appended) => written.extend(appended.events.iter().map(|event| event.seq.0)),
            Err(StoreError::Rejected(Rejection::NotAParticipant { .. })) => rejected += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    written.sort_unstable();
    assert_eq!(rejected, 10);
    assert_eq!(written, (4..94).collect::<Vec<_>>());
    // The listener saw each conversation's events in seq order, whatever order the writers finished in.
    let received: Vec<_> = backend.committed.take().iter().map(|logged| logged.event.seq.0).collect();
    assert_eq!(received, (1..94).collect::<Vec<_>>());
    let page = Page { limit: 100, starting_after: None };
    assert_eq!(backend.store.messages(&app(), &conversation(), page).await.unwrap().len(), 90);
}

fn user_events(logged: &[LoggedEvent<Logged>]) -> Vec<(String, i64, &'static str)> {
    logged
        .iter()
        .filter_map(|logged| match &logged.event {
            Logged::User(event) => {
                let kind = match &event.kind {
                    UserEventKind::Created { .. } => "created",
                    UserEventKind::Updated { .. } => "updated",
                    UserEventKind::ConversationRead { .. } => "read",
                };
                Some((event.user_id.to_string(), event.seq.0, kind))
            }
            Logged::Conversation(_) => None,
        })
        .collect()
}

async fn users_log_their_creation_and_every_change_on_their_own_stream(opener: Opener) {
    let backend = opener.open().await;
    let store = &backend.store;
    store.upsert_users(&app(), vec![(alice(), named("Alice")), (user("bob"), named("Bob"))], 1).await.unwrap();
    store.upsert_users(&app(), vec![(alice(), named("Alice"))], 2).await.unwrap();
    store.upsert_users(&app(), vec![(alice(), named("Alice B."))], 3).await.unwrap();
    let told = backend.committed.take_all();
    let expected =
        [("alice".to_owned(), 1, "created"), ("bob".to_owned(), 1, "created"), ("alice".to_owned(), 2, "updated")];
    assert_eq!(user_events(&told), expected, "a PUT that changes nothing logs nothing");
    let Logged::User(UserEvent { kind: UserEventKind::Updated { user }, .. }) = &told[2].event else { panic!() };
    assert_eq!(user.name, "Alice B.");
    let logged = store.app_events(&app(), Position(0), 10).await.unwrap();
    assert_eq!(logged, told, "the log holds them as the listener was told");
}

async fn a_read_logs_how_far_the_marker_moved(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let bob = user("bob");
    store
        .append_messages(&app(), &conversation(), vec![text(Some(bob.clone()), "1"), text(Some(bob.clone()), "2")], 3)
        .await
        .unwrap();
    backend.committed.take_all();
    store.set_read_state(&app(), &conversation(), &alice(), Some(false)).await.unwrap();
    store.set_read_state(&app(), &conversation(), &alice(), Some(false)).await.unwrap();
    store.set_read_state(&app(), &conversation(), &alice(), Some(true)).await.unwrap();
    let told = backend.committed.take_all();
    assert_eq!(told.len(), 1, "reading again moves nothing, marking unread moves no marker: {told:?}");
    let Logged::User(UserEvent {
        user_id,
        kind: UserEventKind::ConversationRead { conversation_id, after, until, participants },
        ..
    }) = &told[0].event
    else {
        panic!("{told:?}")
    };
    assert_eq!((user_id, conversation_id, *after, *until), (&alice(), &conversation(), Seq(0), Seq(5)));
    assert_eq!(*participants, 2);
    let between = store.messages_between(&app(), &conversation(), *after, *until, 10).await.unwrap();
    assert_eq!(between.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(store.messages_between(&app(), &conversation(), Seq(4), Seq(5), 10).await.unwrap().len(), 1);
}

async fn a_deleted_message_is_logged_as_it_was(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let sent = store.append_messages(&app(), &conversation(), vec![text(Some(alice()), "bye")], 3).await.unwrap();
    let deleted = store.delete_message(&app(), &conversation(), &sent.ids[0], &Actor::App).await.unwrap().unwrap();
    let EventKind::MessageDeleted { message: Some(view), .. } = &deleted.kind else { panic!("{deleted:?}") };
    assert_eq!((view.message.text.as_str(), view.sender.as_ref().map(|u| u.name.as_str())), ("bye", Some("Alice")));
    let logged = store.conversation_events(&app(), &conversation(), Seq(4), Seq(5)).await.unwrap();
    assert_eq!(logged[0].event, deleted);
}

async fn a_webhook_receiver_is_held_by_one_owner_until_its_lease_lapses(opener: Opener) {
    let backend = opener.open().await;
    let store = &backend.store;
    let url = "http://127.0.0.1:9/hook";
    let claim = |owner: &'static str, now: Millis, take_over: bool| async move {
        store.claim_webhook(&app(), url, owner, now, now + 100, Position(7), take_over).await.unwrap()
    };
    assert_eq!(claim("a", 1000, false).await, Some(Position(7)), "a new receiver starts where the log is");
    assert_eq!(claim("b", 1050, false).await, None, "held by a");
    assert!(store.save_webhook_position(&app(), url, "a", Position(9), 1200).await.unwrap());
    assert_eq!(claim("b", 1150, false).await, None, "a renewed its lease");
    assert_eq!(claim("b", 1201, false).await, Some(Position(9)), "b takes over where a was");
    assert!(!store.save_webhook_position(&app(), url, "a", Position(10), 1300).await.unwrap(), "a lost it");
    assert_eq!(claim("a", 1210, true).await, Some(Position(9)), "taking over ignores the lease");
    let failure = WebhookFailure {
        event_id: "evt_1".into(),
        kind: "message.sent",
        attempts: 3,
        last_error: "answered 500".into(),
        failed_at: 1300,
    };
    store.record_webhook_failure(&app(), url, failure.clone()).await.unwrap();
    store.record_webhook_failure(&app(), url, failure).await.unwrap();
}

async fn pruning_keeps_what_a_live_webhook_receiver_has_not_had(opener: Opener) {
    let retention = Retention { max_events_per_conversation: 2, ..Retention::default() };
    let backend = with_conversation_retained(opener, retention).await;
    let store = &backend.store;
    let start = backend.committed.take().last().unwrap().position;
    let now = crate::store::sql::now_millis();
    store.claim_webhook(&app(), "http://127.0.0.1:9/hook", "a", now, now + 60_000, start, false).await.unwrap();
    let batch: Vec<_> = (0..4).map(|i| text(None, &format!("m{i}"))).collect();
    store.append_messages(&app(), &conversation(), batch, 3).await.unwrap();
    assert_eq!(store.prune_events(now).await.unwrap(), 3, "the receiver has had the first three, not the messages");
    let owed = store.app_events(&app(), start, 100).await.unwrap();
    store.save_webhook_position(&app(), "http://127.0.0.1:9/hook", "a", owed[1].position, now + 60_000).await.unwrap();
    store.append_messages(&app(), &conversation(), vec![text(None, "later")], 4).await.unwrap();
    let pruned = store.prune_events(now).await.unwrap();
    assert_eq!(pruned, 2, "the two messages it has had now");
}

async fn live_states_show_a_conversation_its_participants_and_a_list_as_one_user_sees_them(opener: Opener) {
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    store.append_messages(&app(), &conversation(), vec![text(Some(alice()), "hi")], 50).await.unwrap();
    let bob = user("bob");
    let state = store.conversation_state(&app(), &conversation(), &bob).await.unwrap().expect("bob takes part");
    assert_eq!(state.last_message.as_ref().map(|view| view.message.created_at), Some(50));
    assert_eq!(state.last_message.as_ref().and_then(|view| view.sender.as_ref()).map(|u| u.id.clone()), Some(alice()));
    assert_eq!((state.participant.unread_message_count, state.read_until, state.everyone_read_until), (1, 0, 0));
    store.set_read_state(&app(), &conversation(), &bob, Some(false)).await.unwrap();
    let read = store.conversation_state(&app(), &conversation(), &bob).await.unwrap().unwrap();
    assert_eq!((read.participant.unread_message_count, read.read_until, read.everyone_read_until), (0, 50, 50));
    assert_eq!(store.conversation_state(&app(), &conversation(), &user("carol")).await.unwrap(), None);

    assert_eq!(store.participant_user(&app(), &conversation(), &bob).await.unwrap().map(|u| u.id), Some(bob.clone()));
    assert_eq!(store.participant_user(&app(), &conversation(), &user("carol")).await.unwrap(), None);
    let page = store.participants_page(&app(), &conversation(), &bob, 1).await.unwrap().expect("bob takes part");
    assert_eq!((page.participants.len(), page.loaded_all), (1, false));
    let all = store.participants_page(&app(), &conversation(), &bob, 10).await.unwrap().unwrap();
    assert_eq!((all.participants.len(), all.loaded_all), (2, true));
    assert_eq!(store.participants_page(&app(), &conversation(), &user("carol"), 10).await.unwrap(), None);

    // A second conversation bob joins later, without messages: it is his most recent activity.
    let other = ConversationId::parse("other").unwrap();
    let patch = ConversationPatch { participants: vec![bob.clone()], ..Default::default() };
    store.upsert_conversation(&app(), &other, patch, 100).await.unwrap();
    let list = store.conversation_list_state(&app(), &bob, 1, None).await.unwrap();
    let ids = |list: &crate::store::ConversationListPage| {
        list.conversations.iter().map(|state| state.conversation.id.to_string()).collect::<Vec<_>>()
    };
    assert_eq!((ids(&list), list.loaded_all, list.member_of.len()), (vec!["other".to_owned()], false, 2));
    use crate::domain::filter::{ConversationFilter, SimpleFilter};
    let filter = ConversationFilter::All(SimpleFilter { has_messages: Some(true), ..Default::default() });
    let filtered = store.conversation_list_state(&app(), &bob, 5, Some(Arc::new(filter))).await.unwrap();
    assert_eq!((ids(&filtered), filtered.loaded_all), (vec![conversation().to_string()], true));
    let nobody = store.conversation_list_state(&app(), &user("nobody"), 5, None).await.unwrap();
    assert!(nobody.conversations.is_empty() && nobody.loaded_all && nobody.member_of.is_empty());
}

async fn unread_counts_follow_sends_reads_deletes_imports_and_rejoins(opener: Opener) {
    use crate::domain::{message::ImportedMessage, Actor};
    let backend = with_conversation(opener).await;
    let store = &backend.store;
    let (c, bob, carol) = (conversation(), user("bob"), user("carol"));
    let counts = || async {
        let mut counts = Vec::new();
        for who in [alice(), user("bob"), user("carol")] {
            let state = store.conversation_state(&app(), &c, &who).await.unwrap();
            counts.push(state.map(|state| state.participant.unread_message_count));
        }
        counts
    };
    let sent = store
        .append_messages(&app(), &c, vec![text(Some(alice()), "a1"), text(Some(alice()), "a2"), text(None, "s")], 5)
        .await
        .unwrap()
        .ids;
    assert_eq!(counts().await, [Some(1), Some(3), None], "a system message counts for everyone, own ones not");
    store.delete_message(&app(), &c, &sent[0], &Actor::App).await.unwrap();
    assert_eq!(counts().await, [Some(1), Some(2), None], "a deleted message is unread no more");
    store.delete_message(&app(), &c, &sent[2], &Actor::App).await.unwrap();
    assert_eq!(counts().await, [Some(0), Some(1), None]);
    store.set_read_state(&app(), &c, &bob, Some(false)).await.unwrap();
    store.append_messages(&app(), &c, vec![text(Some(alice()), "a3")], 6).await.unwrap();
    assert_eq!(counts().await, [Some(0), Some(1), None]);
    store.put_participant(&app(), &c, &carol, Default::default(), 7).await.unwrap();
    assert_eq!(counts().await, [Some(0), Some(1), Some(2)], "a joiner has read nothing");

    let imported =
        ImportedMessage { message: text(Some(carol.clone()), "old"), timestamp: 7, read_by: vec![bob.clone()] };
    store.import_messages(&app(), &c, vec![imported], 8).await.unwrap();
    assert_eq!(counts().await, [Some(1), Some(0), Some(0)], "the reader and the sender have read it");
    store.remove_participant(&app(), &c, &carol).await.unwrap();
    store.put_participant(&app(), &c, &carol, Default::default(), 9).await.unwrap();
    assert_eq!(counts().await, [Some(1), Some(0), Some(2)], "rejoining: everything but one's own is unread");
    store.delete_all_messages(&app(), &c).await.unwrap();
    assert_eq!(counts().await, [Some(0), Some(0), Some(0)]);
    store.append_messages(&app(), &c, vec![text(None, "after")], 10).await.unwrap();
    assert_eq!(counts().await, [Some(1), Some(1), Some(1)]);
}
