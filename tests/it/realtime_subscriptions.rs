use std::{sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use natter_client::SubscriptionState;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

fn loaded_all(state: &SubscriptionState) -> bool {
    matches!(state, SubscriptionState::Active { loaded_all: true, .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_system_message_reaches_100_subscribers() {
    let gateway = spawn_gateway().await;
    let users: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    let batch: serde_json::Map<_, _> = users.iter().map(|u| (u.clone(), json!({ "name": u }))).collect();
    gateway.put("/users", Value::Object(batch)).await.expect(200);
    gateway.put("/conversations/town", json!({ "participants": users })).await.expect(200);
    let mut subscriptions = Vec::new();
    let mut sessions = Vec::new();
    for user in &users {
        let session = gateway.connect(user).await;
        let subscription = session.conversation("town").subscribe_messages().await.unwrap();
        within(subscription.connected()).await.unwrap();
        sessions.push(session);
        subscriptions.push(subscription);
    }
    gateway
        .post("/conversations/town/messages", json!([{ "type": "SystemMessage", "text": "Order *shipped*" }]))
        .await
        .expect(200);
    for subscription in &subscriptions {
        let state = within(subscription.wait_for(|state| !messages(state).is_empty())).await;
        let received = messages(&state);
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].kind, "SystemMessage");
        assert_eq!(received[0].plaintext, "Order shipped");
        assert_eq!(received[0].sender, None);
        assert_eq!(
            received[0].content,
            vec![json!({ "type": "text", "children": ["Order ", { "type": "bold", "children": ["shipped"] }] })]
        );
    }
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn the_window_starts_with_30_and_load_more_reaches_loaded_all_on_200_messages() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("long", &["reader"]).await;
    for batch in 0..20 {
        let items: Vec<_> =
            (0..10).map(|i| json!({ "type": "SystemMessage", "text": format!("m{:03}", batch * 10 + i) })).collect();
        gateway.post("/conversations/long/messages", Value::Array(items)).await.expect(200);
    }
    let session = gateway.connect("reader").await;
    let subscription = session.conversation("long").subscribe_messages().await.unwrap();
    let state = within(subscription.connected()).await.unwrap();
    let window = texts_of(&state);
    assert_eq!(window.len(), 30);
    assert_eq!(window[0], "m199");
    assert_eq!(window[29], "m170");
    assert!(!loaded_all(&state));

    within(subscription.load_more(Some(50))).await.unwrap();
    let state = subscription.state();
    assert_eq!(texts_of(&state).len(), 80);
    assert_eq!(texts_of(&state)[79], "m120");
    let mut rounds = 0;
    while !loaded_all(&subscription.state()) {
        within(subscription.load_more(None)).await.unwrap();
        rounds += 1;
        assert!(rounds < 10);
    }
    let all = texts_of(&subscription.state());
    let expected: Vec<String> = (0..200).rev().map(|i| format!("m{i:03}")).collect();
    assert_eq!(all, expected, "every message once, newest first");
    // loadMore on a complete window changes nothing.
    within(subscription.load_more(None)).await.unwrap();
    assert_eq!(texts_of(&subscription.state()).len(), 200);
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn concurrent_load_more_calls_load_one_page_of_the_largest_count() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    for batch in 0..10 {
        let items: Vec<_> =
            (0..10).map(|i| json!({ "type": "SystemMessage", "text": format!("{}", batch * 10 + i) })).collect();
        gateway.post("/conversations/c/messages", Value::Array(items)).await.expect(200);
    }
    let session = gateway.connect("u").await;
    let subscription = session.conversation("c").subscribe_messages_with_limit(Some(10)).await.unwrap();
    within(subscription.connected()).await.unwrap();
    let (a, b) = tokio::join!(subscription.load_more(Some(5)), subscription.load_more(Some(10)));
    a.unwrap();
    b.unwrap();
    assert_eq!(texts_of(&subscription.state()).len(), 20, "10 more, not 15");
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn edits_deletes_delete_all_and_reactions_reach_subscribers() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let alice = gateway.connect("alice").await;
    let bob = gateway.connect("bob").await;
    let watching = bob.conversation("c").subscribe_messages().await.unwrap();
    within(watching.connected()).await.unwrap();

    let first = gateway.send_text("c", "alice", "first").await;
    let second = alice.conversation("c").send("second").await.unwrap();
    let state = within(watching.wait_for(|state| messages(state).len() == 2)).await;
    assert_eq!(texts_of(&state), vec!["second", "first"]);
    assert_eq!(messages(&state)[0].sender.as_ref().unwrap().name, "User alice");

    // An edit over REST, and one over the socket.
    gateway
        .put(&format!("/conversations/c/messages/{first}"), json!({ "text": "first!", "markEdited": true }))
        .await
        .expect(200);
    alice.conversation("c").message(&second).edit(json!({ "text": "second!" })).await.unwrap();
    let state = within(watching.wait_for(|state| texts_of(state) == ["second!", "first!"])).await;
    assert!(messages(&state).iter().all(|m| m.edited_at.is_some()));

    // Reactions from REST and the socket; bob's own shows currentUserReacted.
    gateway
        .put(&format!("/conversations/c/messages/{first}/reactions/%F0%9F%91%8D/alice"), json!(null))
        .await
        .expect(200);
    bob.conversation("c").message(&first).reaction("👍\u{fe0f}").add().await.unwrap();
    let state = within(
        watching.wait_for(|state| messages(state).iter().any(|m| m.reactions.first().is_some_and(|r| r.count == 2))),
    )
    .await;
    let reacted = messages(&state).into_iter().find(|m| m.id == first).unwrap();
    assert_eq!(reacted.reactions[0].emoji, "👍");
    assert!(reacted.reactions[0].current_user_reacted);
    bob.conversation("c").message(&first).reaction("👍").remove().await.unwrap();
    let state = within(watching.wait_for(|state| {
        messages(state).iter().any(|m| m.reactions.first().is_some_and(|r| r.count == 1 && !r.current_user_reacted))
    }))
    .await;
    assert_eq!(messages(&state).len(), 2);

    // Delete one, then all.
    gateway.delete(&format!("/conversations/c/messages/{second}")).await.expect(200);
    let state = within(watching.wait_for(|state| messages(state).len() == 1)).await;
    assert_eq!(texts_of(&state), vec!["first!"]);
    gateway.send_text("c", "alice", "third").await;
    within(watching.wait_for(|state| messages(state).len() == 2)).await;
    gateway.delete("/conversations/c/messages").await.expect(200);
    let state = within(watching.wait_for(|state| messages(state).is_empty())).await;
    assert!(loaded_all(&state));
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn snapshots_expand_the_sender_and_the_replied_message_one_level() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let question = gateway.send_text("c", "alice", "question?").await;
    let post = |body| gateway.post("/conversations/c/messages", body);
    let answer =
        post(json!([{ "type": "UserMessage", "sender": "bob", "text": "answer", "referencedMessageId": question }]))
            .await;
    let answer = answer.expect(200)[0]["id"].as_str().unwrap().to_owned();
    post(json!([{ "type": "UserMessage", "sender": "alice", "text": "thanks", "referencedMessageId": answer }]))
        .await
        .expect(200);
    let session = gateway.connect("bob").await;
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    let state = within(subscription.connected()).await.unwrap();
    let window = messages(&state);
    let thanks = &window[0];
    let referenced = thanks.referenced_message.as_ref().expect("a reply expands what it replies to");
    assert_eq!(referenced.id, answer);
    assert_eq!(referenced.sender.as_ref().unwrap().id, "bob");
    assert_eq!(referenced.referenced_message_id.as_deref(), Some(question.as_str()), "one level only");
    assert_eq!(thanks.sender.as_ref().unwrap().id, "alice");
    assert_eq!(window[2].referenced_message, None);
    gateway.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_committed_while_subscribing_appear_exactly_once_in_order() {
    let gateway = Arc::new(spawn_gateway().await);
    gateway.create_conversation("busy", &["writer", "reader"]).await;
    let writer = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                gateway.send_text("busy", "writer", &format!("w{i:03}")).await;
            }
        })
    };
    // Subscribe repeatedly while the writer runs, so subscriptions start at many points of the stream.
    let mut subscriptions = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let session = gateway.connect("reader").await;
        let subscription = session.conversation("busy").subscribe_messages_with_limit(Some(5)).await.unwrap();
        sessions.push(session);
        subscriptions.push(subscription);
    }
    writer.await.unwrap();
    let expected: Vec<String> = (0..150).rev().map(|i| format!("w{i:03}")).collect();
    for subscription in &subscriptions {
        within(subscription.wait_for(|state| texts_of_or_empty(state).first().map(String::as_str) == Some("w149")))
            .await;
        while !loaded_all(&subscription.state()) {
            within(subscription.load_more(Some(100))).await.unwrap();
        }
        assert_eq!(texts_of(&subscription.state()), expected);
    }
    gateway.assert_frames_valid();
}

fn texts_of_or_empty(state: &SubscriptionState) -> Vec<String> {
    match state {
        SubscriptionState::Active { latest_snapshot: Some(messages), .. } => {
            messages.iter().map(|m| m.plaintext.clone()).collect()
        }
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn a_non_participant_has_a_null_snapshot_that_fills_on_join_and_empties_on_removal() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["member"]).await;
    gateway.create_user("outsider").await;
    gateway.send_text("c", "member", "before joining").await;
    let session = gateway.connect("outsider").await;
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    let state = within(subscription.connected()).await.unwrap();
    assert_eq!(state, SubscriptionState::Active { latest_snapshot: None, loaded_all: true });
    gateway.send_text("c", "member", "private").await;

    gateway.put("/conversations/c/participants/outsider", json!({})).await.expect(200);
    let state = within(
        subscription.wait_for(|state| !matches!(state, SubscriptionState::Active { latest_snapshot: None, .. })),
    )
    .await;
    assert_eq!(texts_of(&state), vec!["private", "before joining"], "a joined user sees the history");
    gateway.send_text("c", "member", "welcome").await;
    within(subscription.wait_for(|state| texts_of_or_empty(state).len() == 3)).await;

    gateway.delete("/conversations/c/participants/outsider").await.expect(200);
    within(subscription.wait_for(|state| matches!(state, SubscriptionState::Active { latest_snapshot: None, .. })))
        .await;
    gateway.send_text("c", "member", "after leaving").await;
    gateway.put("/conversations/c/participants/outsider", json!({})).await.expect(200);
    let state = within(subscription.wait_for(|state| texts_of_or_empty(state).len() == 4)).await;
    assert_eq!(texts_of(&state)[0], "after leaving");

    gateway.delete("/conversations/c").await.expect(200);
    within(subscription.wait_for(|state| matches!(state, SubscriptionState::Active { latest_snapshot: None, .. })))
        .await;
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn a_conversation_that_does_not_exist_yet_fills_when_created_with_the_user() {
    let gateway = spawn_gateway().await;
    gateway.create_user("early").await;
    let session = gateway.connect("early").await;
    let subscription = session.conversation("future").subscribe_messages().await.unwrap();
    assert_eq!(
        within(subscription.connected()).await.unwrap(),
        SubscriptionState::Active { latest_snapshot: None, loaded_all: true }
    );
    gateway.put("/conversations/future", json!({ "participants": ["early"] })).await.expect(200);
    gateway.send_text("future", "early", "hello future").await;
    let state = within(subscription.wait_for(|state| texts_of_or_empty(state) == ["hello future"])).await;
    assert_eq!(texts_of(&state), vec!["hello future"]);
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn unsubscribe_stops_updates() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    let session = gateway.connect("u").await;
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    subscription.unsubscribe().await;
    assert_eq!(subscription.state(), SubscriptionState::Unsubscribed);
    gateway.send_text("c", "u", "unseen").await;
    // The session goes on: a new subscription works on the same connection.
    let again = session.conversation("c").subscribe_messages().await.unwrap();
    assert_eq!(texts_of(&within(again.connected()).await.unwrap()), vec!["unseen"]);
    assert_eq!(subscription.state(), SubscriptionState::Unsubscribed);
    gateway.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_while_others_keep_receiving() {
    // Room for a reader that keeps reading but is briefly descheduled (tests run in parallel); none for one that stops.
    let gateway = spawn_gateway_with(|config| config.outbox_events = 256).await;
    gateway.create_conversation("firehose", &["fast", "slow"]).await;
    let subscribe = |user: &'static str| {
        let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token(user, None));
        async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            socket
                .send(Message::text(r#"{"type":"subscribeMessages","id":"s","conversationId":"firehose"}"#))
                .await
                .unwrap();
            socket
        }
    };
    let mut slow = subscribe("slow").await;
    let snapshot = crate::realtime_auth::read_frame(&mut slow, &gateway).await;
    assert_eq!(snapshot["type"], "snapshot");
    // The fast subscriber reads everything as it comes, counting new messages.
    let mut fast = subscribe("fast").await;
    assert_eq!(crate::realtime_auth::read_frame(&mut fast, &gateway).await["type"], "snapshot");
    let total = 1500;
    let fast_reader = tokio::spawn(async move {
        let mut created = 0;
        while created < total {
            match fast.next().await {
                Some(Ok(Message::Text(text))) if text.as_str().contains(r#""kind":"messageCreated""#) => created += 1,
                Some(Ok(Message::Close(frame))) => panic!("the fast subscriber was closed after {created}: {frame:?}"),
                Some(Ok(_)) => {}
                other => panic!("the fast subscriber lost its connection after {created}: {other:?}"),
            }
        }
        created
    });

    // Large messages fill the slow socket's buffers, then its outbox; the slow client reads nothing meanwhile.
    let text = "x".repeat(8 * 1024);
    for batch in 0..total / 10 {
        let items: Vec<_> =
            (0..10).map(|i| json!({ "type": "SystemMessage", "text": format!("{text}{}", batch * 10 + i) })).collect();
        gateway.post("/conversations/firehose/messages", Value::Array(items)).await.expect(200);
        // Paced so that a reader that keeps reading can keep up (debug builds parse frames slowly).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(within(fast_reader).await.unwrap(), total, "the fast subscriber got every message");

    // The slow one now reads what was buffered, and then finds its connection ended before the last message.
    let mut events = 0;
    let ended = within(async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Text(text))) => {
                    gateway.observe(text.as_str());
                    events += 1;
                }
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await;
    assert!(events < total, "the slow consumer was cut off, not served everything ({events} events)");
    assert!(matches!(ended, Some(4000) | None), "closed with {ended:?}");
    let metrics = gateway.client.get(format!("{}/metrics", gateway.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("natter_slow_consumer_disconnects_total 1"), "{metrics}");
    gateway.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_reach_subscribers_in_seq_order_without_a_gap() {
    let gateway = Arc::new(spawn_gateway().await);
    gateway.create_conversation("busy", &["reader", "writer"]).await;
    let session = gateway.connect("reader").await;
    let subscription = session.conversation("busy").subscribe_messages_with_limit(Some(1)).await.unwrap();
    within(subscription.connected()).await.unwrap();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let gateway = gateway.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                gateway.send_text("busy", "writer", &format!("w{writer}-{i:02}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    // Every message arrives live: the window grows to all 200 without a loadMore.
    let state = within(subscription.wait_for(|state| texts_of_or_empty(state).len() == 200)).await;
    let seqs: Vec<i64> = messages(&state).iter().map(|m| m.seq).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] > pair[1]), "newest first, strictly by seq");
    let stored = gateway.get("/conversations/busy/messages?limit=100").await;
    let newest: Vec<String> =
        stored.expect(200)["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    let window: Vec<String> = messages(&state).iter().take(100).map(|m| m.id.clone()).collect();
    assert_eq!(window, newest);
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn a_subscribe_ended_before_its_read_returns_still_gets_exactly_one_reply() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("alice", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut refused, mut answered) = (0, 0);
    for round in 0..20 {
        let (subscribe, unsubscribe) = (format!("s{round}"), format!("u{round}"));
        // Both frames in one TCP segment: the unsubscribe is read while the first read is (usually) in flight.
        let frames = [
            json!({ "type": "subscribeMessages", "id": subscribe, "conversationId": "c" }),
            json!({ "type": "unsubscribe", "id": unsubscribe, "conversationId": "c" }),
        ];
        for frame in frames {
            socket.feed(Message::text(frame.to_string())).await.unwrap();
        }
        socket.flush().await.unwrap();
        let mut replies_to_subscribe = Vec::new();
        loop {
            let Some(Ok(Message::Text(text))) = within(socket.next()).await else { panic!("the socket ended") };
            gateway.observe(&text);
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["id"] == json!(subscribe) {
                replies_to_subscribe.push(frame.clone());
            }
            if frame["id"] == json!(unsubscribe) {
                assert_eq!(frame["type"], "ok");
                break;
            }
        }
        assert_eq!(replies_to_subscribe.len(), 1, "round {round}: {replies_to_subscribe:?}");
        match replies_to_subscribe[0]["type"].as_str() {
            Some("ok") => answered += 1,
            Some("error") => {
                assert_eq!(replies_to_subscribe[0]["errorCode"], "UNSUBSCRIBED");
                refused += 1;
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(refused > 0, "every read finished before its unsubscribe ({answered} answered): nothing was tested");
    gateway.assert_frames_valid();
}
