//! The node's cache of conversations' newest windows: a second subscriber is answered without a store read, and
//! whatever a subscriber would read from the store (a new message, a reaction, a renamed sender, a join) is what
//! it gets, cached or not.

use natter_client::SubscriptionState;
use serde_json::json;

use crate::helpers::*;

/// A fresh session's first window of `conversation`, as `user` sees it (`None`: not a participant).
async fn first_window(
    gateway: &TestGateway,
    user: &str,
    conversation: &str,
) -> Option<Vec<natter_client::MessageSnapshot>> {
    let session = gateway.connect(user).await;
    let subscription = session.conversation(conversation).subscribe_messages().await.unwrap();
    match within(subscription.connected()).await.unwrap() {
        SubscriptionState::Active { latest_snapshot, .. } => latest_snapshot,
        other => panic!("not active: {other:?}"),
    }
}

fn texts(window: &Option<Vec<natter_client::MessageSnapshot>>) -> Vec<String> {
    window.as_ref().expect("a participant's window").iter().map(|message| message.plaintext.clone()).collect()
}

#[tokio::test]
async fn a_cached_window_is_what_the_store_would_give_and_changes_with_the_conversation() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    gateway.create_user("carol").await;
    let one = gateway.send_text("c", "bob", "one").await;
    const HITS: &str = "natter_window_cache_hits_total";

    // The first subscriber reads the store and fills the cache; the next ones, participants or not, use it.
    assert_eq!(texts(&first_window(&gateway, "alice", "c").await), ["one"]);
    assert_eq!(metric(&gateway, HITS).await, 0.0);
    assert_eq!(texts(&first_window(&gateway, "bob", "c").await), ["one"]);
    assert_eq!(first_window(&gateway, "carol", "c").await, None, "an outsider's snapshot is null, cached or not");
    assert_eq!(metric(&gateway, HITS).await, 2.0);

    // A message drops the entry: the next subscriber reads it from the store, and the one after from the cache.
    gateway.send_text("c", "alice", "two").await;
    assert_eq!(texts(&first_window(&gateway, "bob", "c").await), ["two", "one"]);
    assert_eq!(texts(&first_window(&gateway, "alice", "c").await), ["two", "one"]);
    assert_eq!(metric(&gateway, HITS).await, 3.0);

    // A reaction, a renamed sender and a join each reach the next window.
    gateway.put(&format!("/conversations/c/messages/{one}/reactions/%F0%9F%91%8D/alice"), json!({})).await.expect(200);
    let window = first_window(&gateway, "alice", "c").await;
    let reacted = &window.as_ref().unwrap()[1];
    assert_eq!(reacted.reactions.len(), 1, "the reaction is in the window: {reacted:?}");
    first_window(&gateway, "alice", "c").await;
    gateway.put("/users/bob", json!({ "name": "Bobby" })).await.expect(200);
    // This time an outsider reads first: what it fills the cache with serves the participants in full.
    assert_eq!(first_window(&gateway, "carol", "c").await, None);
    let hits = metric(&gateway, HITS).await;
    let window = first_window(&gateway, "alice", "c").await;
    assert_eq!(metric(&gateway, HITS).await, hits + 1.0);
    assert_eq!(texts(&window), ["two", "one"]);
    assert_eq!(window.as_ref().unwrap()[1].sender.as_ref().unwrap().name, "Bobby");
    gateway.put("/conversations/c/participants/carol", json!({})).await.expect(200);
    assert_eq!(texts(&first_window(&gateway, "carol", "c").await), ["two", "one"]);
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn a_subscriber_that_got_a_cached_window_gets_every_message_after_it() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    gateway.send_text("c", "bob", "m0").await;
    first_window(&gateway, "alice", "c").await;
    // Subscribe from the cache while messages keep coming: each subscription ends up with every message once.
    let mut sessions = Vec::new();
    for i in 1..=20 {
        let session = gateway.connect("alice").await;
        let subscription = session.conversation("c").subscribe_messages().await.unwrap();
        if i == 1 {
            // Nothing has changed since the window above was read: this one comes from the cache.
            within(subscription.connected()).await.unwrap();
        }
        gateway.send_text("c", "bob", &format!("m{i}")).await;
        sessions.push((session, subscription));
    }
    for (i, (_session, subscription)) in sessions.iter().enumerate() {
        let complete = |state: &SubscriptionState| {
            matches!(state, SubscriptionState::Active { .. }) && messages(state).len() == 21
        };
        let state = within(subscription.wait_for(complete)).await;
        let expected: Vec<String> = (0..=20).rev().map(|n| format!("m{n}")).collect();
        assert_eq!(texts_of(&state), expected, "subscription {i}");
    }
    assert!(metric(&gateway, "natter_window_cache_hits_total").await >= 1.0);
}
