use std::time::Duration;

use futures::{SinkExt, StreamExt};
use natter_client::SubscriptionState;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::helpers::*;

async fn status_of_upgrade(gateway: &TestGateway, url: String) -> u16 {
    match tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("unexpected error: {error} ({})", gateway.base),
    }
}

#[tokio::test]
async fn bad_missing_or_expired_tokens_are_refused_with_401_before_the_upgrade() {
    let gateway = spawn_gateway().await;
    let base = format!("{}/v1/{APP}/realtime", gateway.ws_base());
    let other_app = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "tokenType": "user", "iss": OTHER_APP, "sub": "u" }),
        &jsonwebtoken::EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
    )
    .unwrap();
    let app_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "tokenType": "app", "iss": APP, "sub": "u", "exp": now_secs() + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let not_yet = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "tokenType": "user", "iss": APP, "sub": "u", "nbf": now_secs() + 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    for (why, url) in [
        ("missing", base.clone()),
        ("garbage", format!("{base}?token=abc")),
        ("expired", format!("{base}?token={}", user_token("u", Some(now_secs() - 10)))),
        ("other app's token", format!("{base}?token={other_app}")),
        ("app token", format!("{base}?token={app_token}")),
        ("not yet valid", format!("{base}?token={not_yet}")),
    ] {
        assert_eq!(status_of_upgrade(&gateway, url).await, 401, "{why}");
    }
    let unknown_app = format!("{}/v1/nosuchapp/realtime?token={}", gateway.ws_base(), user_token("u", None));
    assert_eq!(status_of_upgrade(&gateway, unknown_app).await, 404);
    assert_eq!(status_of_upgrade(&gateway, format!("{base}?token={}", user_token("u", None))).await, 101);
}

pub type RawSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads the next text frame, validating it against its schema.
pub async fn read_frame(socket: &mut RawSocket, gateway: &TestGateway) -> Value {
    loop {
        match within(socket.next()).await.unwrap().unwrap() {
            Message::Text(text) => {
                gateway.observe(text.as_str());
                return serde_json::from_str(text.as_str()).unwrap();
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_connection_stays_open() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("u", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for (bad, id) in [
        ("not json", Value::Null),
        (r#"{"type":"subscribeMessages"}"#, Value::Null),
        (r#"{"type":"warp","id":"7"}"#, json!("7")),
        (r#"{"type":"subscribeMessages","id":"8","conversationId":""}"#, json!("8")),
        (r#"{"type":"subscribeMessages","id":"9","conversationId":"c","limit":0}"#, json!("9")),
    ] {
        socket.send(Message::text(bad)).await.unwrap();
        let reply = read_frame(&mut socket, &gateway).await;
        assert_eq!(reply["type"], "error", "{bad}: {reply}");
        assert_eq!(reply["id"], id, "{bad}: {reply}");
    }
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(read_frame(&mut socket, &gateway).await["errorCode"], "INVALID_FRAME");
    // Still usable.
    socket.send(Message::text(r#"{"type":"subscribeMessages","id":"ok","conversationId":"c"}"#)).await.unwrap();
    let snapshot = read_frame(&mut socket, &gateway).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(read_frame(&mut socket, &gateway).await, json!({ "type": "ok", "id": "ok", "result": {} }));
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn oversized_frames_close_the_connection_with_1009() {
    let gateway = spawn_gateway().await;
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("u", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let huge = format!(r#"{{"type":"sendMessage","id":"1","conversationId":"c","text":"{}"}}"#, "x".repeat(300 * 1024));
    let _ = socket.send(Message::text(huge)).await;
    let closed = within(async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                Some(Ok(Message::Close(None))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(matches!(closed, Some(1009) | None), "closed with {closed:?}");
}

#[tokio::test]
async fn a_new_token_keeps_subscriptions_alive_past_the_old_expiry() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    let session = gateway.connect_with_token(&user_token("u", Some(now_secs() + 2))).await;
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    session.set_token(&user_token("u", Some(now_secs() + 3600))).await.unwrap();
    let refused = session.set_token(&user_token("someone else", None)).await.unwrap_err();
    assert!(
        matches!(refused, natter_client::ClientError::Refused { ref code, .. } if code == "FORBIDDEN"),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    gateway.send_text("c", "u", "still here").await;
    let state = within(subscription.wait_for(|state| texts_of_safe(state).contains(&"still here".to_owned()))).await;
    assert_eq!(texts_of(&state), vec!["still here"]);
    gateway.assert_frames_valid();
}

fn texts_of_safe(state: &SubscriptionState) -> Vec<String> {
    match state {
        SubscriptionState::Active { latest_snapshot: Some(messages), .. } => {
            messages.iter().map(|m| m.plaintext.clone()).collect()
        }
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn an_expired_token_ends_subscriptions_in_error_and_closes_with_4001() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    let session = gateway.connect_with_token(&user_token("u", Some(now_secs() + 2))).await;
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    let ended = within(subscription.terminated()).await;
    let SubscriptionState::Error(reason) = ended else { panic!("expected error, got {ended:?}") };
    assert!(reason.contains("TOKEN_EXPIRED"), "{reason}");
    gateway.assert_frames_valid();
}

/// Opens a WebSocket by hand, to send frames no client library would.
async fn raw_websocket(gateway: &TestGateway) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = gateway.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /v1/{APP}/realtime?token={} HTTP/1.1\r\nHost: natter\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        user_token("raw", None)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// A text frame as a client sends it (masked), or not masked, which clients must not do.
fn text_frame(payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, (payload.len() as u8) | if masked { 0x80 } else { 0 }];
    if masked {
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// Reads server frames until a close frame, and returns its code.
async fn close_code(stream: &mut tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    within(async {
        loop {
            let mut header = [0u8; 2];
            stream.read_exact(&mut header).await.ok()?;
            let mut length = (header[1] & 0x7f) as usize;
            if length == 126 {
                let mut extended = [0u8; 2];
                stream.read_exact(&mut extended).await.ok()?;
                length = u16::from_be_bytes(extended) as usize;
            }
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.ok()?;
            if header[0] & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    })
    .await
}

#[tokio::test]
async fn protocol_violations_close_with_their_rfc_6455_codes() {
    use tokio::io::AsyncWriteExt;
    let gateway = spawn_gateway().await;
    let mut stream = raw_websocket(&gateway).await;
    stream.write_all(&text_frame(&[0xff, 0xfe, 0xfd], true)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1007), "invalid UTF-8");
    let mut stream = raw_websocket(&gateway).await;
    stream.write_all(&text_frame(br#"{"type":"unsubscribe","id":"1","conversationId":"c"}"#, false)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002), "an unmasked client frame");
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_upgrade_is_refused_with_400_naming_the_header() {
    let gateway = spawn_gateway().await;
    let token = user_token("u", None);
    let url = format!("{}/v1/{APP}/realtime?token={token}", gateway.base);
    let upgrade = [("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-version", "13")];
    let cases = [
        ("plain GET", vec![], "Connection header"),
        ("no Upgrade header", vec![upgrade[0]], "Upgrade header"),
        ("version 8", vec![upgrade[0], upgrade[1], ("sec-websocket-version", "8")], "Sec-WebSocket-Version"),
        ("no key", upgrade.to_vec(), "Sec-WebSocket-Key"),
    ];
    for (why, headers, named) in cases {
        let mut request = gateway.client.get(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let reply = Reply { status: response.status(), body: response.json().await.unwrap() };
        let reasons = reply.expect_error(400, "INVALID_UPGRADE");
        assert!(reasons.contains(named), "{why}: {reasons}");
    }
}

#[tokio::test]
async fn the_handshake_answers_the_key_as_rfc_6455_derives_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = spawn_gateway().await;
    let address = gateway.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // The key and its answer are the example of RFC 6455, section 1.3.
    let request = format!(
        "GET /v1/{APP}/realtime?token={} HTTP/1.1\r\nHost: {address}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        user_token("u", None)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within(stream.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
}

/// The gateway writes its frames itself (`realtime::frame_writer`) and leaves pongs to tungstenite: a strict client
/// must read every frame whole, of every length encoding, with the pongs between them.
#[tokio::test]
async fn frames_of_every_size_and_pongs_between_them_arrive_whole_and_in_order() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    // Texts on each side of the 7-bit and 16-bit lengths; the window of them is larger than 64 KiB.
    let sizes = [1usize, 60, 70, 200, 65_000, 40_000];
    for (i, size) in sizes.iter().enumerate() {
        gateway.send_text("c", "u", &format!("{i}:{}", "x".repeat(*size))).await;
    }
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("u", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(r#"{"type":"subscribeMessages","id":"s","conversationId":"c"}"#)).await.unwrap();
    let snapshot = read_frame(&mut socket, &gateway).await;
    assert_eq!(snapshot["messages"].as_array().unwrap().len(), sizes.len(), "{}", snapshot["type"]);
    assert_eq!(read_frame(&mut socket, &gateway).await["type"], "ok");

    // Pings among a run of events that the gateway writes together.
    let sending = async {
        for i in 0..40 {
            if i % 10 == 0 {
                socket.send(Message::Ping(format!("p{i}").into_bytes().into())).await.unwrap();
            }
            let text = format!("e{i}:{}", "y".repeat(i * 97));
            gateway
                .post("/conversations/c/messages", json!([{ "type": "SystemMessage", "text": text }]))
                .await
                .expect(200);
        }
    };
    // The socket is used by both halves in turn: sending first, then reading everything back.
    sending.await;
    let (mut pongs, mut events) = (Vec::new(), Vec::new());
    while events.len() < 40 || pongs.len() < 4 {
        match within(socket.next()).await.unwrap().unwrap() {
            Message::Pong(payload) => pongs.push(String::from_utf8(payload.to_vec()).unwrap()),
            Message::Text(text) => {
                gateway.observe(text.as_str());
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(frame["type"], "event", "{frame}");
                let text = frame["event"]["message"]["plaintext"].as_str().unwrap().to_owned();
                events.push(text);
            }
            Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pongs, ["p0", "p10", "p20", "p30"]);
    let expected: Vec<String> = (0..40).map(|i| format!("e{i}:{}", "y".repeat(i * 97))).collect();
    assert_eq!(events, expected);
    gateway.assert_frames_valid();
}
