//! The client's side of the no-hole rule, against a scripted server on a loopback socket: an event beyond the next
//! one owed makes the client subscribe again with a resume from the last event it applied, ignore what the old
//! subscription still sends, and apply the replay, with the subscription active throughout.

use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use natter_client::{ClientConfig, Session, SubscriptionState};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn token(user: &str) -> String {
    let encode = |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    format!("{}.{}.unsigned", encode(json!({ "alg": "HS256" })), encode(json!({ "sub": user })))
}

fn message(seq: i64) -> Value {
    json!({
        "id": format!("m{seq}"), "type": "SystemMessage", "seq": seq, "sender": null,
        "content": [{"type": "text", "children": [format!("text {seq}")]}], "plaintext": format!("text {seq}"),
        "custom": {}, "createdAt": seq, "editedAt": null, "origin": "rest",
        "referencedMessageId": null, "referencedMessage": null, "reactions": []
    })
}

fn created(seq: i64) -> Value {
    json!({ "type": "event", "conversationId": "c", "seq": seq, "event": { "kind": "messageCreated", "message": message(seq) } })
}

fn ids(state: &SubscriptionState) -> Vec<String> {
    match state {
        SubscriptionState::Active { latest_snapshot: Some(messages), .. } => {
            messages.iter().map(|message| message.id.clone()).collect()
        }
        other => panic!("not active: {other:?}"),
    }
}

type Server = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn next_request(socket: &mut Server) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("the client went away: {other:?}"),
        }
    }
}

async fn send(socket: &mut Server, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

#[tokio::test]
async fn a_hole_in_the_event_stream_is_recovered_by_a_resume_from_the_last_applied_event() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let subscribe = next_request(&mut socket).await;
        assert_eq!(subscribe["type"], "subscribeMessages");
        send(
            &mut socket,
            json!({ "type": "snapshot", "conversationId": "c", "seq": 5, "messages": [message(5)], "loadedAll": true }),
        )
        .await;
        send(&mut socket, json!({ "type": "ok", "id": subscribe["id"], "result": {} })).await;
        send(&mut socket, created(6)).await;
        // 7 is lost on the way.
        send(&mut socket, created(8)).await;
        let unsubscribe = next_request(&mut socket).await;
        assert_eq!(
            (unsubscribe["type"].as_str(), unsubscribe["conversationId"].as_str()),
            (Some("unsubscribe"), Some("c"))
        );
        let again = next_request(&mut socket).await;
        assert_eq!(again["type"], "subscribeMessages");
        assert_eq!(again["resume"]["fromSeq"], 6, "resumes from the last event applied: {again}");
        // The old subscription's last frames are still on their way; the client must not apply them.
        send(&mut socket, created(9)).await;
        send(&mut socket, json!({ "type": "ok", "id": unsubscribe["id"], "result": {} })).await;
        send(&mut socket, json!({ "type": "resumed", "conversationId": "c", "fromSeq": 6, "seq": 8 })).await;
        send(&mut socket, json!({ "type": "ok", "id": again["id"], "result": {} })).await;
        send(&mut socket, created(7)).await;
        send(&mut socket, created(8)).await;
        send(&mut socket, created(9)).await;
        // Keep the socket open until the client is done.
        let _ = socket.next().await;
    });

    let config = ClientConfig { url, app_id: "app".into(), token: token("me"), observer: None };
    let session = Session::connect(config).await.unwrap();
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    let state = tokio::time::timeout(
        Duration::from_secs(5),
        subscription.wait_for(
            |state| matches!(state, SubscriptionState::Active { latest_snapshot: Some(m), .. } if m.len() == 5),
        ),
    )
    .await
    .expect("the window fills");
    assert_eq!(ids(&state), ["m9", "m8", "m7", "m6", "m5"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ids(&subscription.state()), ["m9", "m8", "m7", "m6", "m5"], "nothing twice");
    session.close().await;
    server.abort();
}
