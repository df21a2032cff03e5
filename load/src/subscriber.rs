//! A lean WebSocket subscriber: it subscribes with a one-message window and then reads event frames with a few
//! substring searches instead of a full JSON parse, so the harness is not the bottleneck.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::gateway::now_micros;

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Counters shared by every subscriber of a run.
#[derive(Default)]
pub struct Shared {
    pub delivered: AtomicU64,
    /// Bytes of the text frames counted in `delivered` (the WebSocket payloads, without the 2 to 4 bytes of frame
    /// header each).
    pub delivered_bytes: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_order: AtomicU64,
    /// End-to-end latency in microseconds, from the publisher's send to this read.
    pub latency: Mutex<Option<Histogram<u64>>>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        let histogram = Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
        Arc::new(Self { latency: Mutex::new(Some(histogram)), ..Default::default() })
    }
}

/// Connects and subscribes; returns once the snapshot arrived.
pub async fn connect(ws_url: &str, token: &str, conversation: &str) -> anyhow::Result<Socket> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.context("connect")?;
    let subscribe = format!(r#"{{"type":"subscribeMessages","id":"s","conversationId":"{conversation}","limit":1}}"#);
    socket.send(Message::text(subscribe)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next()).await.context("no snapshot within 60 s")?;
        match frame {
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"snapshot""#) => return Ok(socket),
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"error""#) => bail!("refused: {text}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("closed before the snapshot"),
        }
    }
}

/// What one subscriber expects: the message indexes `n` its conversation receives.
pub struct Expectation {
    pub total_messages: u64,
    pub belongs: Box<dyn Fn(u64) -> bool + Send + Sync>,
}

/// Reads until every expected message arrived, the deadline passed, or the socket closed. Returns how many
/// expected messages were missed.
pub async fn receive(
    mut socket: Socket,
    expectation: Arc<Expectation>,
    shared: Arc<Shared>,
    deadline: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let total = expectation.total_messages;
    let expected = (0..total).filter(|&n| (expectation.belongs)(n)).count() as u64;
    let mut seen = vec![0u64; (total as usize).div_ceil(64)];
    let mut unique = 0u64;
    let mut last_seq = 0i64;
    let mut latencies = Vec::with_capacity(256);
    let mut deadline = deadline;
    while unique < expected {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = deadline.wait_for(|passed| *passed) => break,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let Some(event) = parse_created(text.as_str()) else { continue };
        if event.seq <= last_seq {
            shared.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        last_seq = last_seq.max(event.seq);
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        shared.delivered_bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        let (word, bit) = ((event.n / 64) as usize, event.n % 64);
        if event.n >= total || seen[word] & (1 << bit) != 0 {
            shared.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seen[word] |= 1 << bit;
        unique += 1;
        latencies.push(now_micros().saturating_sub(event.sent_micros).max(1));
        if latencies.len() == latencies.capacity() {
            flush(&shared, &mut latencies);
        }
    }
    flush(&shared, &mut latencies);
    let _ = socket.close(None).await;
    expected - unique
}

fn flush(shared: &Shared, latencies: &mut Vec<u64>) {
    if let Some(histogram) = shared.latency.lock().expect("histogram lock").as_mut() {
        for &latency in latencies.iter() {
            let _ = histogram.record(latency);
        }
    }
    latencies.clear();
}

struct Created {
    seq: i64,
    n: u64,
    sent_micros: u64,
}

/// Reads `seq`, and the `n` and `t` of a created message's custom data, without parsing the whole frame.
/// Event frames start `{"type":"event","conversationId":..,"seq":N,"event":{"kind":..`; custom keys are sorted.
fn parse_created(text: &str) -> Option<Created> {
    if !text.starts_with(r#"{"type":"event""#) || !text.contains(r#""kind":"messageCreated""#) {
        return None;
    }
    let seq = number_after(text, r#""seq":"#)?;
    let n = number_after(text, r#""custom":{"n":""#)?;
    let sent_micros = number_after(text, r#","t":""#)?;
    Some(Created { seq: seq as i64, n, sent_micros })
}

fn number_after(text: &str, marker: &str) -> Option<u64> {
    let start = text.find(marker)? + marker.len();
    let digits: &str = &text[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seq_n_and_t_from_an_event_frame() {
        let frame = r#"{"type":"event","conversationId":"c","seq":42,"event":{"kind":"messageCreated","message":{"id":"m","type":"SystemMessage","seq":42,"sender":null,"content":[],"plaintext":"load","custom":{"n":"7","t":"1700000000000000"},"createdAt":1}}}"#;
        let created = parse_created(frame).unwrap();
        assert_eq!((created.seq, created.n, created.sent_micros), (42, 7, 1_700_000_000_000_000));
        assert!(parse_created(r#"{"type":"event","conversationId":"c","seq":1,"event":{"kind":"messageDeleted"}}"#)
            .is_none());
    }
}
