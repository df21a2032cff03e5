//! Delivery that never skips a hole, over real sockets: with a broker that delivers late, twice and out of order,
//! every subscriber still receives every event of its conversation exactly once, in `seq` order, because sessions
//! hold what comes early and fill the hole from the event log.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use natter::hub::broker::{BrokerConfig, Unreliability};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe_raw(gateway: &TestGateway, user: &str, conversation: &str) -> (Socket, i64) {
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token(user, None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let frame = json!({ "type": "subscribeMessages", "id": "s", "conversationId": conversation, "limit": 5 });
    socket.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let frame = next_frame(gateway, &mut socket).await;
        if frame["type"] == "snapshot" {
            return (socket, frame["seq"].as_i64().unwrap());
        }
    }
}

async fn next_frame(gateway: &TestGateway, socket: &mut Socket) -> Value {
    loop {
        match within(socket.next()).await {
            Some(Ok(Message::Text(text))) => {
                gateway.observe(&text);
                return serde_json::from_str(&text).unwrap();
            }
            Some(Ok(_)) => {}
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscriber_gets_every_event_once_in_order_through_a_broker_that_reorders_and_duplicates() {
    let gateway = spawn_gateway_with(|config| {
        config.broker = BrokerConfig::Unreliable(Unreliability {
            seed: 11,
            late: 0.3,
            twice: 0.3,
            max_delay: Duration::from_millis(40),
        });
    })
    .await;
    let writers = ["w0", "w1", "w2", "w3"];
    let readers: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let mut everyone: Vec<&str> = writers.to_vec();
    everyone.extend(readers.iter().map(String::as_str));
    gateway.create_conversation("h", &everyone).await;

    let mut subscribers = Vec::new();
    for reader in &readers {
        subscribers.push(subscribe_raw(&gateway, reader, "h").await);
    }
    // Writers on four tasks: messages, and a reaction to each, so several kinds of event interleave.
    let mut tasks = Vec::new();
    for writer in writers {
        let (client, url) = (gateway.client.clone(), gateway.url("/conversations/h/messages"));
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let body = json!([{ "type": "UserMessage", "sender": writer, "text": format!("{writer} {i}") }]);
                let reply: Value =
                    client.post(&url).bearer_auth(SECRET).json(&body).send().await.unwrap().json().await.unwrap();
                let id = reply[0]["id"].as_str().unwrap().to_owned();
                let reaction = format!("{url}/{id}/reactions/%F0%9F%91%8D/{writer}");
                let status = client.put(&reaction).bearer_auth(SECRET).send().await.unwrap().status();
                assert!(status.is_success(), "reaction: {status}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // The conversation's last seq, as a fresh subscription sees it.
    let (_, last) = subscribe_raw(&gateway, "w0", "h").await;

    for (mut socket, snapshot_seq) in subscribers {
        let mut seen = Vec::new();
        while seen.last().copied().unwrap_or(snapshot_seq) < last {
            let frame = next_frame(&gateway, &mut socket).await;
            match frame["type"].as_str() {
                Some("event") => seen.push(frame["seq"].as_i64().unwrap()),
                Some("snapshot") => panic!("a hole was repaired with a fresh snapshot: {frame}"),
                _ => {}
            }
        }
        assert_eq!(seen, ((snapshot_seq + 1)..=last).collect::<Vec<_>>(), "each event once, in order");
    }
    // The broker did reorder: sessions found holes and filled them.
    let text = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap().text().await.unwrap();
    let holes: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("natter_hole_fetches_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the hole counter is exported");
    assert!(holes > 0.0, "no hole was ever found: the test did not test anything");
    gateway.assert_frames_valid();
}
