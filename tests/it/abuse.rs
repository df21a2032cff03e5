//! Limits per app and per connection: past them, clear refusals, and everyone else is served.

use std::time::Duration;

use futures::SinkExt;
use natter::limits::LimitConfig;
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

fn limits(rest: u32, connections: usize, frames: u32) -> LimitConfig {
    LimitConfig {
        rest_requests_per_second: rest,
        connections_per_app: connections,
        frames_per_second: frames,
        ..LimitConfig::default()
    }
}

#[tokio::test]
async fn rest_requests_past_the_app_rate_get_429_with_retry_after() {
    let gateway = spawn_gateway_with(|config| config.limits = limits(5, 0, 0)).await;
    let mut refused = None;
    for _ in 0..40 {
        let response = gateway.client.get(gateway.url("/users")).bearer_auth(SECRET).send().await.unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the 40 requests at once were all served");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["errorCode"], "RATE_LIMITED");
    // Another app has its own budget.
    let other = format!("{}/v1/{OTHER_APP}/users", gateway.base);
    gateway.send(Method::GET, &other, Some(OTHER_SECRET), None).await.expect(200);
    // And after waiting, the app is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    gateway.get("/users").await.expect(200);
}

#[tokio::test]
async fn connections_past_the_app_limit_are_refused_with_429() {
    let gateway = spawn_gateway_with(|config| config.limits = limits(0, 2, 0)).await;
    let url = |user: &str| format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token(user, None));
    let (first, _) = tokio_tungstenite::connect_async(url("a")).await.unwrap();
    let (_second, _) = tokio_tungstenite::connect_async(url("b")).await.unwrap();
    match tokio_tungstenite::connect_async(url("c")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected 429, got {other:?}"),
    }
    drop(first);
    // The slot frees once the server sees the first connection close.
    within(async {
        loop {
            if tokio_tungstenite::connect_async(url("c")).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn frames_past_the_connection_rate_get_error_frames_and_the_socket_stays_open() {
    let gateway = spawn_gateway_with(|config| config.limits = limits(0, 0, 5)).await;
    gateway.create_conversation("c", &["u"]).await;
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("u", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for i in 0..30 {
        let frame = format!(r#"{{"type":"unsubscribe","id":"{i}","conversationId":"c"}}"#);
        socket.send(Message::text(frame)).await.unwrap();
    }
    let mut limited = 0;
    for _ in 0..30 {
        let reply = crate::realtime_auth::read_frame(&mut socket, &gateway).await;
        if reply["errorCode"] == "TOO_MANY_REQUESTS" {
            limited += 1;
        }
    }
    assert!(limited > 0 && limited < 30, "{limited} of 30 frames were limited");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    socket.send(Message::text(r#"{"type":"subscribeMessages","id":"later","conversationId":"c"}"#)).await.unwrap();
    assert_eq!(crate::realtime_auth::read_frame(&mut socket, &gateway).await["type"], "snapshot");
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn subscriptions_past_the_connection_limit_are_refused() {
    let gateway = spawn_gateway_with(|config| config.limits.subscriptions_per_connection = 2).await;
    let session = gateway.connect("u").await;
    for conversation in ["a", "b"] {
        let subscription = session.conversation(conversation).subscribe_messages().await.unwrap();
        within(subscription.connected()).await.unwrap();
    }
    let third = session.conversation("c").subscribe_messages().await.unwrap();
    let ended = within(third.terminated()).await;
    assert!(
        matches!(ended, natter_client::SubscriptionState::Error(ref reason) if reason.contains("TOO_MANY_SUBSCRIPTIONS")),
        "{ended:?}"
    );
    gateway.assert_frames_valid();
}
