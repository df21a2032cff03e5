//! The conversation, participants, typing and online subscriptions over real sockets: each first state (null
//! where the Data API says so), every kind of change that must move it, windows and their `loadMore`, typing's
//! expiry (with a short configured timeout) and its 5-typist threshold, and presence across two sessions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    helpers::*,
    realtime_auth::{read_frame, RawSocket},
    realtime_users::{connect, request},
};

fn ok(id: &str) -> Value {
    json!({"type": "ok", "id": id, "result": {}})
}

/// Sends a request nobody else answers and expects its reply next: nothing else was sent before it.
async fn expect_quiet(socket: &mut RawSocket, gw: &TestGateway, id: &str) {
    request(socket, json!({"type": "unsubscribeUser", "id": id, "userId": "nobody"})).await;
    assert_eq!(read_frame(socket, gw).await, ok(id));
}

/// The `conversation` field of the next frame, which must be a conversation frame.
async fn next_conversation(socket: &mut RawSocket, gw: &TestGateway) -> Value {
    let frame = read_frame(socket, gw).await;
    assert_eq!((&frame["type"], &frame["conversationId"]), (&json!("conversation"), &json!("c")), "{frame}");
    frame["conversation"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_subscription_follows_messages_reads_settings_and_membership() {
    let gw = spawn_gateway().await;
    gw.create_user("me").await;
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeConversation", "id": "1", "conversationId": "c"})).await;
    assert_eq!(next_conversation(&mut socket, &gw).await, Value::Null, "not a participant (no conversation yet)");
    assert_eq!(read_frame(&mut socket, &gw).await, ok("1"));

    // Joining fills it.
    gw.create_user("bob").await;
    gw.put("/conversations/c", json!({"participants": ["me", "bob"], "subject": "Plans", "custom": {"k": "v"}}))
        .await
        .expect(200);
    let joined = next_conversation(&mut socket, &gw).await;
    assert_eq!(joined["id"], "c");
    assert_eq!(joined["subject"], "Plans");
    assert_eq!(joined["custom"], json!({"k": "v"}));
    assert_eq!(joined["welcomeMessages"], json!([]), "never null in snapshots");
    assert_eq!(joined["lastMessage"], Value::Null);
    assert_eq!((&joined["unreadMessageCount"], &joined["isUnread"]), (&json!(0), &json!(false)));
    assert_eq!((&joined["access"], &joined["notify"]), (&json!("ReadWrite"), &json!(true)));
    assert!(joined["joinedAt"].as_i64().unwrap() > 0);

    // A message from bob: the last message, unread for me, read by bob (he sent it).
    let id = gw.send_text("c", "bob", "hello").await;
    let sent = next_conversation(&mut socket, &gw).await;
    assert_eq!(sent["lastMessage"]["id"], id.as_str());
    assert_eq!(sent["lastMessage"]["plaintext"], "hello");
    assert_eq!(sent["lastMessage"]["sender"]["name"], "User bob");
    assert_eq!((&sent["unreadMessageCount"], &sent["isUnread"]), (&json!(1), &json!(true)));
    let created_at = sent["lastMessage"]["createdAt"].clone();
    assert_eq!(sent["readUntil"], 0);
    assert_eq!(sent["everyoneReadUntil"], 0, "I have not read it");

    // I read it over the socket.
    request(&mut socket, json!({"type": "markAsRead", "id": "2", "conversationId": "c"})).await;
    let mut frames = [read_frame(&mut socket, &gw).await, read_frame(&mut socket, &gw).await];
    frames.sort_by_key(|frame| frame["type"].as_str().unwrap().to_owned());
    assert_eq!(frames[1], ok("2"));
    let read = &frames[0]["conversation"];
    assert_eq!((&read["unreadMessageCount"], &read["isUnread"]), (&json!(0), &json!(false)));
    assert_eq!((&read["readUntil"], &read["everyoneReadUntil"]), (&created_at, &created_at));

    // The sender renames: the embedded sender is current.
    gw.put("/users/bob", json!({"name": "Robert"})).await.expect(200);
    assert_eq!(next_conversation(&mut socket, &gw).await["lastMessage"]["sender"]["name"], "Robert");
    // An edit changes the last message; my settings change access and notify.
    gw.put(&format!("/conversations/c/messages/{id}"), json!({"text": "hello again"})).await.expect(200);
    assert_eq!(next_conversation(&mut socket, &gw).await["lastMessage"]["plaintext"], "hello again");
    gw.patch("/conversations/c/participants/me", json!({"access": "Read", "notify": false})).await.expect(200);
    let settings = next_conversation(&mut socket, &gw).await;
    assert_eq!((&settings["access"], &settings["notify"]), (&json!("Read"), &json!(false)));
    // Deleting the last message: none is left.
    gw.delete(&format!("/conversations/c/messages/{id}")).await.expect(200);
    assert_eq!(next_conversation(&mut socket, &gw).await["lastMessage"], Value::Null);
    // Leaving empties it.
    gw.delete("/conversations/c/participants/me").await.expect(200);
    assert_eq!(next_conversation(&mut socket, &gw).await, Value::Null);
    expect_quiet(&mut socket, &gw, "3").await;

    request(&mut socket, json!({"type": "unsubscribeConversation", "id": "4", "conversationId": "c"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await, ok("4"));
    gw.put("/conversations/c/participants/me", json!({})).await.expect(200);
    expect_quiet(&mut socket, &gw, "5").await;
    gw.assert_frames_valid();
}

/// The user ids of a participants frame, which must be one.
fn participant_ids(frame: &Value) -> Vec<String> {
    assert_eq!(frame["type"], "participants", "{frame}");
    let participants = frame["participants"].as_array().unwrap_or_else(|| panic!("null participants: {frame}"));
    participants.iter().map(|entry| entry["user"]["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participants_window_starts_at_ten_loads_more_and_takes_joiners_first() {
    let gw = spawn_gateway().await;
    gw.create_conversation("c", &["me"]).await;
    // Joined one after another, so each has its own joinedAt.
    let others: Vec<String> = (0..11).map(|n| format!("u{n:02}")).collect();
    for user in &others {
        gw.create_user(user).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        gw.put(&format!("/conversations/c/participants/{user}"), json!({})).await.expect(200);
    }
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeParticipants", "id": "1", "conversationId": "c"})).await;
    let first = read_frame(&mut socket, &gw).await;
    let newest_ten: Vec<String> = others.iter().rev().take(10).cloned().collect();
    assert_eq!(participant_ids(&first), newest_ten, "the 10 most recently joined, newest first");
    assert_eq!(first["loadedAll"], false);
    assert_eq!(
        (&first["participants"][0]["access"], &first["participants"][0]["notify"]),
        (&json!("ReadWrite"), &json!(true))
    );
    assert!(first["participants"][0]["joinedAt"].as_i64().unwrap() > 0);
    assert_eq!(read_frame(&mut socket, &gw).await, ok("1"));

    request(&mut socket, json!({"type": "loadMoreParticipants", "id": "2", "conversationId": "c", "count": 51})).await;
    let refused = read_frame(&mut socket, &gw).await;
    assert_eq!((&refused["id"], &refused["errorCode"]), (&json!("2"), &json!("INVALID_REQUEST")), "{refused}");
    request(&mut socket, json!({"type": "loadMoreParticipants", "id": "3", "conversationId": "c", "count": 5})).await;
    let more = read_frame(&mut socket, &gw).await;
    assert_eq!(participant_ids(&more).len(), 12);
    assert_eq!(participant_ids(&more).last().unwrap(), "me", "the first to join is last");
    assert_eq!(more["loadedAll"], true);
    assert_eq!(read_frame(&mut socket, &gw).await, ok("3"));
    // Loading more of a window that holds everything answers at once.
    request(&mut socket, json!({"type": "loadMoreParticipants", "id": "4", "conversationId": "c"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await, ok("4"));

    // A joiner is prepended; a rename of a participant shows.
    tokio::time::sleep(Duration::from_millis(3)).await;
    gw.create_user("late").await;
    gw.put("/conversations/c/participants/late", json!({"access": "Read"})).await.expect(200);
    let joined = read_frame(&mut socket, &gw).await;
    assert_eq!(participant_ids(&joined)[0], "late");
    assert_eq!(joined["participants"][0]["access"], "Read");
    gw.put("/users/u05", json!({"name": "Renamed"})).await.expect(200);
    let renamed = read_frame(&mut socket, &gw).await;
    let entry = renamed["participants"].as_array().unwrap().iter().find(|entry| entry["user"]["id"] == "u05").unwrap();
    assert_eq!(entry["user"]["name"], "Renamed");

    // Leaving: null.
    gw.delete("/conversations/c/participants/me").await.expect(200);
    let left = read_frame(&mut socket, &gw).await;
    assert_eq!(left, json!({"type": "participants", "conversationId": "c", "participants": null, "loadedAll": true}));
    gw.assert_frames_valid();
}

/// The typists' ids of the next frame, which must be a typing frame with few typists.
async fn next_typists(socket: &mut RawSocket, gw: &TestGateway) -> Vec<String> {
    let frame = read_frame(socket, gw).await;
    assert_eq!((&frame["type"], &frame["typing"]["many"]), (&json!("typing"), &json!(false)), "{frame}");
    frame["typing"]["users"].as_array().unwrap().iter().map(|user| user["id"].as_str().unwrap().to_owned()).collect()
}

async fn mark_as_typing(socket: &mut RawSocket, gw: &TestGateway, id: &str) {
    request(socket, json!({"type": "markAsTyping", "id": id, "conversationId": "c"})).await;
    assert_eq!(read_frame(socket, gw).await, ok(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_lists_others_until_they_send_or_time_out_and_many_beyond_five() {
    let gw = spawn_gateway_with(|config| config.typing_timeout = Duration::from_millis(400)).await;
    let typists = ["t1", "t2", "t3", "t4", "t5", "t6"];
    let everyone: Vec<&str> = ["me", "bob"].into_iter().chain(typists).collect();
    gw.create_conversation("c", &everyone).await;
    gw.create_user("outsider").await;
    let mut me = connect(&gw, "me").await;
    request(&mut me, json!({"type": "subscribeTyping", "id": "1", "conversationId": "c"})).await;
    assert_eq!(next_typists(&mut me, &gw).await, Vec::<String>::new());
    assert_eq!(read_frame(&mut me, &gw).await, ok("1"));

    // Bob types; my own typing never shows to me.
    let mut bob = connect(&gw, "bob").await;
    mark_as_typing(&mut bob, &gw, "b1").await;
    let frame = read_frame(&mut me, &gw).await;
    assert_eq!(frame["typing"]["users"][0]["name"], "User bob", "typists are UserSnapshots: {frame}");
    mark_as_typing(&mut me, &gw, "2").await;
    expect_quiet(&mut me, &gw, "3").await;
    // A message from bob, from any channel, ends his typing.
    gw.send_text("c", "bob", "done").await;
    assert_eq!(next_typists(&mut me, &gw).await, Vec::<String>::new());
    // Typing runs out by itself.
    mark_as_typing(&mut bob, &gw, "b2").await;
    assert_eq!(next_typists(&mut me, &gw).await, ["bob"]);
    assert_eq!(next_typists(&mut me, &gw).await, Vec::<String>::new(), "expired after the timeout");

    // Five typists are listed, longest typing first; a sixth makes it many.
    let mut sockets = Vec::new();
    for (n, typist) in typists.iter().enumerate() {
        let mut socket = connect(&gw, typist).await;
        mark_as_typing(&mut socket, &gw, "t").await;
        let frame = read_frame(&mut me, &gw).await;
        if n < 5 {
            let ids: Vec<&str> =
                frame["typing"]["users"].as_array().unwrap().iter().map(|user| user["id"].as_str().unwrap()).collect();
            assert_eq!(ids, typists[..=n], "{frame}");
        } else {
            assert_eq!(frame["typing"], json!({"many": true}));
        }
        sockets.push(socket);
    }

    // Someone who does not take part sees null and may not mark.
    let mut outsider = connect(&gw, "outsider").await;
    request(&mut outsider, json!({"type": "subscribeTyping", "id": "o1", "conversationId": "c"})).await;
    assert_eq!(read_frame(&mut outsider, &gw).await, json!({"type": "typing", "conversationId": "c", "typing": null}));
    assert_eq!(read_frame(&mut outsider, &gw).await, ok("o1"));
    request(&mut outsider, json!({"type": "markAsTyping", "id": "o2", "conversationId": "c"})).await;
    let refused = read_frame(&mut outsider, &gw).await;
    assert_eq!((&refused["id"], &refused["errorCode"]), (&json!("o2"), &json!("NOT_A_PARTICIPANT")), "{refused}");
    gw.assert_frames_valid();
}

async fn next_online(socket: &mut RawSocket, gw: &TestGateway) -> Value {
    let frame = read_frame(socket, gw).await;
    assert_eq!(frame["type"], "online", "{frame}");
    frame["online"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_online_while_one_of_their_sessions_holds_a_subscription() {
    let gw = spawn_gateway().await;
    gw.create_user("me").await;
    gw.create_user("bob").await;
    let mut me = connect(&gw, "me").await;
    request(&mut me, json!({"type": "subscribeOnline", "id": "1", "userId": "ghost"})).await;
    assert_eq!(read_frame(&mut me, &gw).await, json!({"type": "online", "userId": "ghost", "online": null}));
    assert_eq!(read_frame(&mut me, &gw).await, ok("1"));
    request(&mut me, json!({"type": "subscribeOnline", "id": "2", "userId": "bob"})).await;
    let offline = next_online(&mut me, &gw).await;
    assert_eq!((&offline["user"]["name"], &offline["isConnected"]), (&json!("User bob"), &json!(false)));
    assert_eq!(read_frame(&mut me, &gw).await, ok("2"));

    // A session alone is not enough: bob counts once he subscribes to something.
    let mut first = connect(&gw, "bob").await;
    expect_quiet(&mut me, &gw, "3").await;
    request(&mut first, json!({"type": "subscribeUser", "id": "f", "userId": "bob"})).await;
    assert_eq!(next_online(&mut me, &gw).await["isConnected"], true);
    let mut second = connect(&gw, "bob").await;
    request(&mut second, json!({"type": "subscribeUser", "id": "s", "userId": "bob"})).await;
    assert_eq!(read_frame(&mut second, &gw).await["type"], "user");
    assert_eq!(read_frame(&mut second, &gw).await, ok("s"));
    // One of two closes: still online. The last closes: offline.
    drop(first);
    expect_quiet(&mut me, &gw, "4").await;
    drop(second);
    assert_eq!(next_online(&mut me, &gw).await["isConnected"], false);
    // The embedded user is current.
    gw.put("/users/bob", json!({"name": "Robert"})).await.expect(200);
    assert_eq!(next_online(&mut me, &gw).await["user"]["name"], "Robert");
    gw.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_subscription_counts_as_connected_for_a_few_seconds() {
    let linger = Duration::from_millis(600);
    let gw = spawn_gateway_with(|config| config.request_linger = linger).await;
    gw.create_conversation("c", &["me", "bob"]).await;
    let mut me = connect(&gw, "me").await;
    request(&mut me, json!({"type": "subscribeOnline", "id": "1", "userId": "bob"})).await;
    assert_eq!(next_online(&mut me, &gw).await["isConnected"], false);
    assert_eq!(read_frame(&mut me, &gw).await, ok("1"));

    let mut bob = connect(&gw, "bob").await;
    let asked = std::time::Instant::now();
    request(&mut bob, json!({"type": "markAsRead", "id": "r", "conversationId": "c"})).await;
    assert_eq!(read_frame(&mut bob, &gw).await, ok("r"));
    assert_eq!(next_online(&mut me, &gw).await["isConnected"], true);
    // No further request: offline once the linger is over, not before, though the socket stays open.
    assert_eq!(next_online(&mut me, &gw).await["isConnected"], false);
    assert!(asked.elapsed() >= linger, "offline after {:?}", asked.elapsed());
    // A malformed frame is not a request.
    futures::SinkExt::send(&mut bob, tokio_tungstenite::tungstenite::Message::Text("{".into())).await.unwrap();
    assert_eq!(read_frame(&mut bob, &gw).await["type"], "error");
    expect_quiet(&mut me, &gw, "2").await;
    gw.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_holds_each_live_subscription_with_the_data_api_names() {
    use natter_client::{LiveState, TypingSnapshot};
    let gw = spawn_gateway().await;
    gw.create_conversation("c", &["me", "bob", "carl"]).await;
    let me = gw.connect("me").await;
    let bob = gw.connect("bob").await;
    let conversation = me.conversation("c");

    let subscription = within(conversation.subscribe()).await.unwrap();
    let LiveState::Active(Some(first)) = within(subscription.connected()).await.unwrap() else { panic!("null") };
    assert_eq!((first.id.as_str(), first.last_message.as_ref()), ("c", None));
    within(bob.conversation("c").send("hi")).await.unwrap();
    let sent = within(
        subscription
            .wait_for(|state| matches!(state, LiveState::Active(Some(snapshot)) if snapshot.unread_message_count == 1)),
    )
    .await;
    let LiveState::Active(Some(sent)) = sent else { panic!("{sent:?}") };
    assert_eq!(sent.last_message.unwrap().plaintext, "hi");

    let participants = within(conversation.subscribe_participants()).await.unwrap();
    let LiveState::Active(Some(window)) = within(participants.connected()).await.unwrap() else { panic!("null") };
    assert_eq!((window.participants.len(), window.loaded_all), (3, true));
    within(participants.load_more(Some(5))).await.unwrap();

    let typing = within(conversation.subscribe_typing()).await.unwrap();
    assert_eq!(within(typing.connected()).await.unwrap(), LiveState::Active(Some(TypingSnapshot::Few(vec![]))));
    within(bob.conversation("c").mark_as_typing()).await.unwrap();
    let state =
        within(typing.wait_for(
            |state| matches!(state, LiveState::Active(Some(TypingSnapshot::Few(users))) if !users.is_empty()),
        ))
        .await;
    let LiveState::Active(Some(TypingSnapshot::Few(users))) = state else { panic!("{state:?}") };
    assert_eq!(users[0].id, "bob");

    // carl is connected but holds no subscription and made no request: offline until he takes one.
    let carl = gw.connect("carl").await;
    let online = within(me.user("carl").subscribe_online()).await.unwrap();
    let LiveState::Active(Some(offline)) = within(online.connected()).await.unwrap() else { panic!("null") };
    assert!(!offline.is_connected);
    let _held = within(carl.conversation("c").subscribe_typing()).await.unwrap();
    within(online.wait_for(|state| matches!(state, LiveState::Active(Some(snapshot)) if snapshot.is_connected))).await;

    let list = within(me.subscribe_conversations()).await.unwrap();
    let LiveState::Active(Some(listed)) = within(list.connected()).await.unwrap() else {
        panic!("a list is never null")
    };
    assert_eq!((listed.conversations[0].id.as_str(), listed.loaded_all), ("c", true));
    within(list.load_more(None)).await.unwrap();

    typing.unsubscribe().await;
    assert_eq!(typing.state(), LiveState::Unsubscribed);
    // A subscription the server refuses ends in error.
    let refused = within(me.conversation(&"x".repeat(300)).subscribe()).await.unwrap();
    assert!(matches!(within(refused.connected()).await, Err(LiveState::Error(_))));
    gw.assert_frames_valid();
}

/// The conversation ids of a conversations frame, which must be one.
fn conversation_ids(frame: &Value) -> Vec<String> {
    assert_eq!(frame["type"], "conversations", "{frame}");
    frame["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_list_orders_by_activity_moves_on_messages_joins_and_leaves_and_filters() {
    let gw = spawn_gateway().await;
    for id in ["a", "b", "c"] {
        tokio::time::sleep(Duration::from_millis(3)).await;
        gw.create_conversation(id, &["me", "bob"]).await;
    }
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeConversations", "id": "1", "limit": 2})).await;
    let first = read_frame(&mut socket, &gw).await;
    assert_eq!(conversation_ids(&first), ["c", "b"], "the most recently joined first");
    assert_eq!(first["loadedAll"], false);
    assert_eq!(read_frame(&mut socket, &gw).await, ok("1"));
    request(&mut socket, json!({"type": "loadMoreConversations", "id": "2", "count": 5})).await;
    let more = read_frame(&mut socket, &gw).await;
    assert_eq!((conversation_ids(&more), &more["loadedAll"]), (vec!["c".into(), "b".into(), "a".into()], &json!(true)));
    assert_eq!(read_frame(&mut socket, &gw).await, ok("2"));

    // A message moves its conversation to the front, with its last message and unread count.
    gw.send_text("a", "bob", "news in a").await;
    let moved = read_frame(&mut socket, &gw).await;
    assert_eq!(conversation_ids(&moved), ["a", "c", "b"]);
    assert_eq!(moved["conversations"][0]["lastMessage"]["plaintext"], "news in a");
    assert_eq!(moved["conversations"][0]["unreadMessageCount"], 1);
    // A joined conversation appears; a left one drops out.
    gw.create_conversation("d", &["bob"]).await;
    gw.put("/conversations/d/participants/me", json!({})).await.expect(200);
    assert_eq!(conversation_ids(&read_frame(&mut socket, &gw).await), ["d", "a", "c", "b"]);
    gw.delete("/conversations/c/participants/me").await.expect(200);
    assert_eq!(conversation_ids(&read_frame(&mut socket, &gw).await), ["d", "a", "b"]);
    // Reading moves the unread count.
    request(&mut socket, json!({"type": "markAsRead", "id": "3", "conversationId": "a"})).await;
    let mut frames = [read_frame(&mut socket, &gw).await, read_frame(&mut socket, &gw).await];
    frames.sort_by_key(|frame| frame["type"].as_str().unwrap().to_owned());
    assert_eq!(frames[0]["conversations"][1]["unreadMessageCount"], 0, "{}", frames[0]);
    assert_eq!(frames[1], ok("3"));
    request(&mut socket, json!({"type": "subscribeConversations", "id": "4"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["errorCode"], "ALREADY_SUBSCRIBED");

    request(&mut socket, json!({"type": "unsubscribeConversations", "id": "5"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await, ok("5"));
    gw.send_text("a", "bob", "nobody listens").await;
    expect_quiet(&mut socket, &gw, "6").await;

    // A filtered list: a conversation that stops matching drops out.
    gw.put("/conversations/b", json!({"custom": {"kind": "support"}})).await.expect(200);
    gw.put("/conversations/d", json!({"custom": {"kind": "support"}})).await.expect(200);
    let mut filtered = connect(&gw, "me").await;
    let subscribe =
        json!({"type": "subscribeConversations", "id": "f", "filter": {"custom": {"kind": ["==", "support"]}}});
    request(&mut filtered, subscribe).await;
    assert_eq!(conversation_ids(&read_frame(&mut filtered, &gw).await), ["d", "b"]);
    assert_eq!(read_frame(&mut filtered, &gw).await, ok("f"));
    gw.put("/conversations/d", json!({"custom": {"kind": "sales"}})).await.expect(200);
    assert_eq!(conversation_ids(&read_frame(&mut filtered, &gw).await), ["b"]);
    request(&mut filtered, json!({"type": "subscribeConversations", "id": "g", "filter": {"colour": "red"}})).await;
    let refused = read_frame(&mut filtered, &gw).await;
    assert_eq!((&refused["id"], &refused["errorCode"]), (&json!("g"), &json!("INVALID_REQUEST")), "{refused}");

    gw.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_in_many_conversations_gets_a_window_of_twenty_and_an_empty_list_before_they_exist() {
    let gw = spawn_gateway().await;
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeConversations", "id": "1"})).await;
    assert_eq!(
        read_frame(&mut socket, &gw).await,
        json!({"type": "conversations", "conversations": [], "loadedAll": true})
    );
    assert_eq!(read_frame(&mut socket, &gw).await, ok("1"));
    gw.create_user("me").await;
    gw.create_user("bob").await;
    for n in 0..150 {
        gw.put(&format!("/conversations/m{n:03}"), json!({"participants": ["me", "bob"]})).await.expect(200);
    }
    // Joins arrive one by one; the list settles on the 20 most recent.
    let settled = loop {
        let frame = read_frame(&mut socket, &gw).await;
        if conversation_ids(&frame).first().map(String::as_str) == Some("m149") {
            break frame;
        }
    };
    assert_eq!(conversation_ids(&settled).len(), 20);
    assert_eq!(settled["loadedAll"], false);
    request(&mut socket, json!({"type": "loadMoreConversations", "id": "2", "count": 31})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["errorCode"], "INVALID_REQUEST");
    gw.assert_frames_valid();
}
