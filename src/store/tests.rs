//! The store contract: what every backend must do, run here against SQLite in a temporary directory.

use std::sync::Arc;

use super::*;
use crate::domain::{
    content::Links,
    conversation::ConversationPatch,
    event::EventKind,
    ids::Seq,
    message::{MessageBody, MessageType, Origin},
    Custom,
};

fn app() -> AppId {
    AppId::parse("app").unwrap()
}

fn conversation() -> ConversationId {
    ConversationId::parse("c").unwrap()
}

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
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

async fn open_with_conversation() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite::SqliteStore::open(dir.path(), StoreHooks::default()).unwrap());
    let patch = UserPatch { name: Some("Alice".into()), ..Default::default() };
    store.upsert_users(&app(), vec![(alice(), patch)], 1).await.unwrap();
    let patch = ConversationPatch { participants: vec![alice()], ..Default::default() };
    let events = store.upsert_conversation(&app(), &conversation(), patch, 2).await.unwrap();
    let seqs: Vec<_> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, vec![Seq(1), Seq(2)], "creation and join are the first two events");
    (dir, store)
}

#[tokio::test]
async fn every_event_takes_the_next_sequence_number_of_its_conversation() {
    let (_dir, store) = open_with_conversation().await;
    let appended = store
        .append_messages(&app(), &conversation(), vec![text(Some(alice()), "a"), text(None, "b")], 3)
        .await
        .unwrap();
    let seqs: Vec<_> = appended.events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, vec![Seq(3), Seq(4)]);
    let EventKind::MessageCreated { message } = &appended.events[0].kind else { panic!("not a create") };
    assert_eq!(message.message.seq, Seq(3), "a message carries the seq of the event that created it");

    let id = &appended.ids[0];
    let edit =
        MessageEdit { text: Some(("a2".into(), Links::Allowed)), custom: None, clear_custom: false, mark_edited: true };
    assert_eq!(store.edit_message(&app(), &conversation(), id, edit, &Actor::App, 4).await.unwrap().seq, Seq(5));
    let emoji = crate::domain::reaction::Emoji::parse("👍").unwrap();
    let added = store.add_reaction(&app(), &conversation(), id, &emoji, &alice(), 5).await.unwrap();
    assert_eq!(added.unwrap().seq, Seq(6));
    let again = store.add_reaction(&app(), &conversation(), id, &emoji, &alice(), 5).await.unwrap();
    assert!(again.is_none(), "an idempotent no-op produces no event");
    assert_eq!(store.delete_message(&app(), &conversation(), id, &Actor::App).await.unwrap().unwrap().seq, Seq(7));
}

#[tokio::test]
async fn a_deleted_and_recreated_conversation_never_reuses_a_sequence_number() {
    let (_dir, store) = open_with_conversation().await;
    assert_eq!(store.delete_conversation(&app(), &conversation()).await.unwrap().seq, Seq(3));
    let events = store.upsert_conversation(&app(), &conversation(), ConversationPatch::default(), 9).await.unwrap();
    assert_eq!(events[0].seq, Seq(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_get_unique_contiguous_seqs_and_a_rejected_one_changes_nothing() {
    let (_dir, store) = open_with_conversation().await;
    let stranger = UserId::parse("stranger").unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        let sender = if i % 10 == 0 { stranger.clone() } else { alice() };
        tasks.push(tokio::spawn(async move {
            store.append_messages(&app(), &conversation(), vec![text(Some(sender), &format!("m{i}"))], 10).await
        }));
    }
    let mut seqs = Vec::new();
    let mut rejected = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(appended) => seqs.extend(appended.events.iter().map(|event| event.seq.0)),
            Err(StoreError::Rejected(Rejection::NotAParticipant { .. })) => rejected += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(rejected, 10);
    assert_eq!(seqs, (3..93).collect::<Vec<_>>());
    let page = Page { limit: 100, starting_after: None };
    assert_eq!(store.messages(&app(), &conversation(), page).await.unwrap().len(), 90);
}
