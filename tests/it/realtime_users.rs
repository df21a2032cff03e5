//! `subscribeUser` over a real socket: the first state (null for a user who does not exist yet), a new state on
//! every change made over REST, none for a PUT that changes nothing, only public fields, unsubscribe, the limits,
//! and a fresh state after a reconnect.

use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    helpers::*,
    realtime_auth::{read_frame, RawSocket},
};

pub async fn connect(gw: &TestGateway, user: &str) -> RawSocket {
    let url = format!("{}/v1/{APP}/realtime?token={}", gw.ws_base(), user_token(user, None));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

pub async fn request(socket: &mut RawSocket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_subscription_follows_the_user_from_before_they_exist() {
    let gw = spawn_gateway().await;
    gw.create_user("me").await;
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeUser", "id": "1", "userId": "bob"})).await;
    let first = read_frame(&mut socket, &gw).await;
    assert_eq!(first, json!({"type": "user", "userId": "bob", "seq": 0, "user": null}));
    assert_eq!(read_frame(&mut socket, &gw).await, json!({"type": "ok", "id": "1", "result": {}}));

    gw.put("/users/bob", json!({"name": "Bob", "email": ["bob@example.com"], "custom": {"team": "blue"}}))
        .await
        .expect(200);
    let created = read_frame(&mut socket, &gw).await;
    assert_eq!((&created["type"], &created["seq"]), (&json!("user"), &json!(1)));
    assert_eq!(created["user"]["name"], "Bob");
    assert_eq!(created["user"]["custom"], json!({"team": "blue"}));
    assert!(created["user"].get("email").is_none(), "public fields only: {created}");

    gw.put("/users/bob", json!({"name": "Bob"})).await.expect(200); // changes nothing: no frame
    gw.put("/users/bob", json!({"photoUrl": "https://example.com/bob.png"})).await.expect(200);
    let updated = read_frame(&mut socket, &gw).await;
    assert_eq!((&updated["seq"], &updated["user"]["photoUrl"]), (&json!(2), &json!("https://example.com/bob.png")));
    assert_eq!(updated["user"]["name"], "Bob");

    // A read by bob is on his stream too, but changes nothing a subscriber sees.
    gw.put("/conversations/c", json!({"participants": ["bob", "me"]})).await.expect(200);
    gw.send_text("c", "me", "hi").await;
    gw.put("/users/bob/conversations/c", json!({"isUnread": false})).await.expect(200);
    gw.put("/users/bob", json!({"name": "Robert"})).await.expect(200);
    let renamed = read_frame(&mut socket, &gw).await;
    assert_eq!((&renamed["seq"], &renamed["user"]["name"]), (&json!(4), &json!("Robert")), "seq 3 was the read");

    request(&mut socket, json!({"type": "unsubscribeUser", "id": "2", "userId": "bob"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await, json!({"type": "ok", "id": "2", "result": {}}));
    gw.put("/users/bob", json!({"name": "Bobby"})).await.expect(200);
    // The next frame is the reply to a later request: nothing of bob came in between.
    request(&mut socket, json!({"type": "unsubscribeUser", "id": "3", "userId": "bob"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await, json!({"type": "ok", "id": "3", "result": {}}));

    // After a reconnect, a new subscription starts from the state as it is.
    drop(socket);
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeUser", "id": "4", "userId": "bob"})).await;
    let fresh = read_frame(&mut socket, &gw).await;
    assert_eq!((&fresh["seq"], &fresh["user"]["name"]), (&json!(5), &json!("Bobby")));
    gw.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_subscriptions_refuse_duplicates_bad_ids_and_count_toward_the_limit() {
    let gw = spawn_gateway_with(|config| config.limits.subscriptions_per_connection = 2).await;
    gw.create_conversation("c", &["me", "bob"]).await;
    let mut socket = connect(&gw, "me").await;
    request(&mut socket, json!({"type": "subscribeUser", "id": "1", "userId": "bob"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["type"], "user");
    assert_eq!(read_frame(&mut socket, &gw).await["type"], "ok");
    request(&mut socket, json!({"type": "subscribeUser", "id": "2", "userId": "bob"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["errorCode"], "ALREADY_SUBSCRIBED");
    request(&mut socket, json!({"type": "subscribeUser", "id": "3", "userId": ""})).await;
    let bad = read_frame(&mut socket, &gw).await;
    assert_eq!((&bad["id"], &bad["errorCode"]), (&json!("3"), &json!("INVALID_REQUEST")));
    request(&mut socket, json!({"type": "subscribeMessages", "id": "4", "conversationId": "c"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["type"], "snapshot");
    assert_eq!(read_frame(&mut socket, &gw).await["type"], "ok");
    request(&mut socket, json!({"type": "subscribeUser", "id": "5", "userId": "me"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["errorCode"], "TOO_MANY_SUBSCRIPTIONS");
    request(&mut socket, json!({"type": "subscribeUser", "id": "6"})).await;
    assert_eq!(read_frame(&mut socket, &gw).await["type"], "error", "a frame without userId");
    gw.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_follows_a_user_and_unsubscribes() {
    use natter_client::UserSubscriptionState;
    let gw = spawn_gateway().await;
    gw.create_user("me").await;
    let session = gw.connect("me").await;
    let bob = session.user("bob").subscribe().await.unwrap();
    assert_eq!(within(bob.connected()).await.unwrap(), UserSubscriptionState::Active { latest_snapshot: None });
    gw.put("/users/bob", json!({"name": "Bob", "role": "buyer"})).await.expect(200);
    let named = |name: &'static str| move |state: &UserSubscriptionState| matches!(state, UserSubscriptionState::Active { latest_snapshot: Some(user) } if user.name == name);
    let state = within(bob.wait_for(named("Bob"))).await;
    let UserSubscriptionState::Active { latest_snapshot: Some(user) } = state else { panic!("{state:?}") };
    assert_eq!((user.id.as_str(), user.role.as_str()), ("bob", "buyer"));
    gw.put("/users/bob", json!({"name": "Robert"})).await.expect(200);
    within(bob.wait_for(named("Robert"))).await;
    bob.unsubscribe().await;
    assert_eq!(bob.state(), UserSubscriptionState::Unsubscribed);
    let again = session.user("bob").subscribe().await.unwrap();
    within(again.wait_for(named("Robert"))).await;
    gw.assert_frames_valid();
}
