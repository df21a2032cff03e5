//! `inbox`: users with many conversations each hold a conversation list (`subscribeConversations`) while a stream
//! of messages reorders them. It measures how fast a message becomes visible in its participants' lists (publish
//! to the first list frame whose conversation shows it as `lastMessage`), how many list frames the gateway sends
//! per message, and the gateway's CPU and memory; at the end every live list must equal a list read afresh.
//!
//! A list is a whole state read again after each change, coalesced (one read in flight per session), so a
//! message superseded in its conversation before a read may never be visible: those are counted, not lost.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use futures::{stream, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::{
    gateway::{now_micros, Gateway},
    metrics::{Sampler, Usage},
    report::Outcome,
    subscriber::{Shared, Socket},
    Target,
};

#[derive(Args, Clone, Debug)]
pub struct InboxArgs {
    #[command(flatten)]
    pub target: Target,
    /// Users (U), each connected with one conversation list.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Conversations per user (an even number; one-to-one conversations, so U × this / 2 in all).
    #[arg(long, default_value_t = 50)]
    pub conversations_per_user: usize,
    /// Messages per second published, one per REST request, spread over all conversations.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Messages published in all.
    #[arg(long, default_value_t = 4000)]
    pub messages: u64,
    /// System messages sent to every conversation before the lists open (10 per request), unread by both of its
    /// users: what unread counts cost when nobody keeps up.
    #[arg(long, default_value_t = 0)]
    pub backlog: u64,
}

/// Backlog messages are numbered from here, apart from the measured ones (`n` in 0..messages).
const BACKLOG_N: u64 = 1 << 40;

/// Requests in flight at once, for setup and for publishing.
const CONCURRENCY: usize = 64;
/// After the last publish, how long lists may take to settle.
const SETTLE: Duration = Duration::from_secs(3);

/// The two users of conversation `c`: user `i` opens `per_user / 2` conversations, with the users after it.
fn pair(c: usize, users: usize, per_user: usize) -> (usize, usize) {
    let half = per_user / 2;
    let (i, j) = (c / half, c % half);
    (i, (i + j + 1) % users)
}

/// Which conversation message `n` goes to: a stride through all of them, so consecutive messages hit different
/// users.
fn conversation_of(n: u64, conversations: usize) -> usize {
    ((n.wrapping_mul(7919)) % conversations as u64) as usize
}

/// What one user's list reader learned.
#[derive(Default)]
struct ListLog {
    frames: u64,
    /// The conversation ids and last message ids of the newest frame.
    last: Vec<(String, Option<String>)>,
}

pub async fn inbox(args: InboxArgs) -> anyhow::Result<bool> {
    let per_user = (args.conversations_per_user / 2 * 2).max(2);
    if per_user / 2 >= args.users {
        bail!("--conversations-per-user must be below twice --users");
    }
    let gateway = Arc::new(Gateway::new(args.target.clone()));
    let conversations = args.users * per_user / 2;
    eprintln!("setting up {} users in {conversations} conversations (run {})", args.users, gateway.run_id);
    for chunk in (0..args.users).collect::<Vec<_>>().chunks(100) {
        let batch: serde_json::Map<String, Value> =
            chunk.iter().map(|&i| (gateway.user(i), json!({ "name": format!("Inbox user {i}") }))).collect();
        gateway.put("/users", Value::Object(batch)).await?;
    }
    stream::iter(0..conversations)
        .map(|c| {
            let gateway = gateway.clone();
            let (a, b) = pair(c, args.users, per_user);
            async move {
                let body = json!({ "participants": [gateway.user(a), gateway.user(b)] });
                gateway.put(&format!("/conversations/{}", gateway.conversation(c)), body).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.backlog > 0 {
        eprintln!("sending a backlog of {} messages to each conversation", args.backlog);
        let batches = args.backlog.div_ceil(10);
        stream::iter((0..conversations).flat_map(|c| (0..batches).map(move |b| (c, b))))
            .map(|(c, b)| {
                let gateway = gateway.clone();
                let count = (args.backlog - b * 10).min(10) as usize;
                async move { gateway.publish(c, BACKLOG_N + (c as u64 * batches + b) * 10, count).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
    }

    let sockets: Vec<Socket> = stream::iter(0..args.users)
        .map(|i| {
            let gateway = gateway.clone();
            async move { subscribe_list(&gateway.ws_url(i), &gateway.token(&gateway.user(i))).await }
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let shared = Shared::new();
    let visible = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(read_list(socket, shared.clone(), visible.clone(), stop_rx.clone())))
        .collect();

    let usage = Usage::start(&args.target.server_pid);
    let sampler = Sampler::start(shared.clone(), args.target.server_pid.clone(), None);
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut publishes = Vec::new();
    for n in 0..args.messages {
        tokio::time::sleep_until((start + Duration::from_secs_f64(n as f64 / args.rate)).into()).await;
        let permit = permits.clone().acquire_owned().await?;
        let gateway = gateway.clone();
        publishes.push(tokio::spawn(async move {
            let result = gateway.publish(conversation_of(n, conversations), n, 1).await;
            drop(permit);
            result
        }));
    }
    for publish in publishes {
        publish.await??;
    }
    let published = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let seconds = start.elapsed().as_secs_f64();
    let usage = usage.finish();
    let timeline = sampler.stop().await;
    let _ = stop_tx.send(true);
    let mut logs = Vec::with_capacity(readers.len());
    for reader in readers {
        logs.push(reader.await?);
    }

    // Every live list must be what a fresh subscription reads now.
    let mut diverged = 0u64;
    for (i, log) in logs.iter().enumerate() {
        let fresh = fresh_list(&gateway.ws_url(i), &gateway.token(&gateway.user(i))).await?;
        if fresh != log.last {
            diverged += 1;
        }
    }
    let frames: u64 = logs.iter().map(|log| log.frames).sum();
    let expected = args.messages * 2;
    let seen = visible.load(Ordering::Relaxed);
    let latency = shared.latency.lock().expect("histogram lock").take().expect("histogram");
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let cpu_per_message = usage.server_cpu_s.map(|cpu| round(cpu * 1e6 / args.messages.max(1) as f64));
    let outcome = Outcome {
        scenario: "inbox",
        subscribers: args.users,
        conversations,
        rate: args.rate,
        messages: args.messages,
        expected,
        delivered: seen,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        mismatched_windows: diverged,
        seconds,
        latency,
        usage,
        timeline,
        extra: vec![
            ("conversations_per_user", json!(per_user)),
            ("backlog", json!(args.backlog)),
            ("list_frames", json!(frames)),
            ("list_frames_per_message", json!(round(frames as f64 / args.messages.max(1) as f64))),
            ("superseded", json!(expected.saturating_sub(seen))),
            ("cpu_us_per_message", json!(cpu_per_message)),
            ("publish_seconds", json!(round(published.as_secs_f64()))),
        ],
    };
    outcome.print();
    if let Some(path) = &args.target.report {
        std::fs::write(path, outcome.svg())?;
    }
    Ok(outcome.is_clean())
}

async fn open(ws_url: &str, token: &str) -> anyhow::Result<Socket> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.context("connect")?;
    socket.send(Message::text(r#"{"type":"subscribeConversations","id":"l"}"#)).await?;
    Ok(socket)
}

/// Connects and subscribes; returns once the first list arrived.
async fn subscribe_list(ws_url: &str, token: &str) -> anyhow::Result<Socket> {
    let mut socket = open(ws_url, token).await?;
    first_list(&mut socket).await?;
    Ok(socket)
}

async fn first_list(socket: &mut Socket) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.context("no list within 60 s")? {
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"conversations""#) => {
                return Ok(serde_json::from_str(text.as_str())?)
            }
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"error""#) => bail!("refused: {text}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("closed before the list"),
        }
    }
}

async fn fresh_list(ws_url: &str, token: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut socket = open(ws_url, token).await?;
    let list = first_list(&mut socket).await?;
    let _ = socket.close(None).await;
    Ok(entries(&list))
}

fn entries(list: &Value) -> Vec<(String, Option<String>)> {
    let conversations = list["conversations"].as_array().map(Vec::as_slice).unwrap_or_default();
    conversations
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap_or_default().to_owned();
            (id, c["lastMessage"]["id"].as_str().map(str::to_owned))
        })
        .collect()
}

/// Reads list frames until told to stop; records, per message, the latency of its first appearance.
async fn read_list(
    mut socket: Socket,
    shared: Arc<Shared>,
    visible: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> ListLog {
    let mut log = ListLog::default();
    // The newest message seen in each conversation of the list, by index `n`.
    let mut newest: HashMap<String, u64> = HashMap::new();
    loop {
        let text = tokio::select! {
            _ = stop.changed() => break,
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                _ => break,
            },
        };
        let Ok(list) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        if list["type"] != "conversations" {
            continue;
        }
        log.frames += 1;
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        let now = now_micros();
        for conversation in list["conversations"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let custom = &conversation["lastMessage"]["custom"];
            let (Some(n), Some(t)) = (number(&custom["n"]), number(&custom["t"])) else { continue };
            if n >= BACKLOG_N {
                // Sent before the lists opened: neither a delivery to time nor newer than a measured message.
                continue;
            }
            let id = conversation["id"].as_str().unwrap_or_default();
            if newest.get(id).is_some_and(|&seen| seen >= n) {
                continue;
            }
            newest.insert(id.to_owned(), n);
            visible.fetch_add(1, Ordering::Relaxed);
            if let Some(histogram) = shared.latency.lock().expect("histogram lock").as_mut() {
                let _ = histogram.record(now.saturating_sub(t).max(1));
            }
        }
        log.last = entries(&list);
    }
    log
}

fn number(value: &Value) -> Option<u64> {
    value.as_str()?.parse().ok()
}
