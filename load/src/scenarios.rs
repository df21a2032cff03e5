//! The five scenarios. `fanout` is the core; `maxrate` repeats it at rising rates.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use clap::Args;
use futures::{stream, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::{
    checked,
    gateway::{now_micros, Gateway},
    metrics::{progress_bar, Sampler, Usage},
    report::Outcome,
    subscriber::{self, Expectation, Shared},
    Target,
};

/// Sockets opened at once while connecting many subscribers.
const CONNECT_CONCURRENCY: usize = 256;
/// REST publishes in flight at once.
const PUBLISH_CONCURRENCY: usize = 256;
/// How long a run waits after the last publish for deliveries to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A drain with no delivery for this long is over.
const STALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: Target,
    /// Subscribers (C), each a distinct user.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Conversations (K); subscriber i joins conversation i % K.
    #[arg(long, default_value_t = 100)]
    pub conversations: usize,
    /// Messages per second published (R).
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Messages published in all (M).
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Messages per REST request (1 to 10), sent to one conversation.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Full `natter-client` sessions besides the subscribers, whose windows must match the store at the end.
    #[arg(long, default_value_t = 0)]
    pub checked_clients: usize,
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<bool> {
    let gateway = Arc::new(Gateway::new(args.target.clone()));
    eprintln!("setting up {} users in {} conversations (run {})", args.subscribers, args.conversations, gateway.run_id);
    gateway.setup(args.subscribers, args.conversations).await?;
    let outcome = run_fanout(&gateway, &args).await?;
    finish(&outcome, &args.target)
}

fn finish(outcome: &Outcome, target: &Target) -> anyhow::Result<bool> {
    outcome.print();
    if let Some(path) = &target.report {
        std::fs::write(path, outcome.svg())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(outcome.is_clean())
}

/// Which conversation message `n` goes to: batches of `batch` consecutive messages, round-robin.
fn conversation_of(n: u64, batch: usize, conversations: usize) -> usize {
    ((n / batch as u64) % conversations as u64) as usize
}

async fn connect_all(
    gateway: &Arc<Gateway>,
    subscribers: usize,
    conversations: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<subscriber::Socket>> {
    stream::iter(0..subscribers)
        .map(|i| {
            let (ws_url, gateway) = (gateway.ws_url(i), gateway.clone());
            async move {
                let token = gateway.token(&gateway.user(i));
                subscriber::connect(&ws_url, &token, &gateway.conversation(i % conversations)).await
            }
        })
        .buffered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

pub async fn run_fanout(gateway: &Arc<Gateway>, args: &FanoutArgs) -> anyhow::Result<Outcome> {
    let batch = args.batch.clamp(1, 10);
    let sockets = connect_all(gateway, args.subscribers, args.conversations, CONNECT_CONCURRENCY).await?;
    let checked = checked::connect(gateway, args.checked_clients, args.conversations).await?;
    let shared = Shared::new();
    let (deadline_tx, deadline_rx) = tokio::sync::watch::channel(false);
    let mut receivers = Vec::with_capacity(sockets.len());
    let mut expected = 0u64;
    for (i, socket) in sockets.into_iter().enumerate() {
        let conversation = i % args.conversations;
        let conversations = args.conversations;
        let expectation = Arc::new(Expectation {
            total_messages: args.messages,
            belongs: Box::new(move |n| conversation_of(n, batch, conversations) == conversation),
        });
        expected += (0..args.messages).filter(|&n| (expectation.belongs)(n)).count() as u64;
        receivers.push(tokio::spawn(subscriber::receive(socket, expectation, shared.clone(), deadline_rx.clone())));
    }

    let usage = Usage::start(&args.target.server_pid);
    let progress = progress_bar(args.target.quiet, expected, "deliveries");
    let sampler = Sampler::start(shared.clone(), args.target.server_pid.clone(), progress.clone());
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(PUBLISH_CONCURRENCY));
    let mut publishes = Vec::new();
    let mut first = 0u64;
    while first < args.messages {
        let count = (batch as u64).min(args.messages - first) as usize;
        let due = start + Duration::from_secs_f64(first as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = permits.clone().acquire_owned().await?;
        let gateway = gateway.clone();
        let conversation = conversation_of(first, batch, args.conversations);
        publishes.push(tokio::spawn(async move {
            let result = gateway.publish(conversation, first, count).await;
            drop(permit);
            result
        }));
        first += count as u64;
    }
    for publish in publishes {
        publish.await??;
    }
    let published = start.elapsed();
    // Wait for the rest to arrive; stop early once nothing has arrived for a while (what is missing is lost).
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    let mut last_count = shared.delivered.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while last_count < expected && Instant::now() < drain_until && last_progress.elapsed() < STALL_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let count = shared.delivered.load(Ordering::Relaxed);
        if count > last_count {
            last_count = count;
            last_progress = Instant::now();
        }
    }
    // Throughput counts the time until the last delivery, not the wait after it.
    let seconds = last_progress.max(start + published).duration_since(start).as_secs_f64();
    let _ = deadline_tx.send(true);
    let mut lost = 0;
    for receiver in receivers {
        lost += receiver.await?;
    }
    let usage = usage.finish();
    let timeline = sampler.stop().await;
    if let Some(progress) = progress {
        progress.finish_and_clear();
    }
    let latency = shared.latency.lock().expect("histogram lock").take().expect("histogram");
    let mismatched_windows = checked.mismatches(gateway).await?;
    Ok(Outcome {
        scenario: "fanout",
        mismatched_windows,
        subscribers: args.subscribers,
        conversations: args.conversations,
        rate: args.rate,
        messages: args.messages,
        expected,
        delivered: shared.delivered.load(Ordering::Relaxed),
        lost,
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        out_of_order: shared.out_of_order.load(Ordering::Relaxed),
        seconds,
        latency,
        usage,
        timeline,
        extra: vec![
            ("publish_seconds", json!((published.as_secs_f64() * 1000.0).round() / 1000.0)),
            ("bytes_per_delivery", json!(bytes_per_delivery(&shared))),
            ("batch", json!(batch)),
            ("checked_clients", json!(args.checked_clients)),
        ],
    })
}

#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,
    /// Connections (C), each a distinct user with one subscription.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Conversations the subscribers are spread over.
    #[arg(long, default_value_t = 1000)]
    pub conversations: usize,
    /// How long the idle connections are held before they close.
    #[arg(long, default_value_t = 3)]
    pub hold_seconds: u64,
    /// Messages each conversation holds before the clients connect, so that each subscribe's snapshot carries
    /// up to 30 of them.
    #[arg(long, default_value_t = 0)]
    pub history: usize,
}

/// `idle`: connect and subscribe C clients, hold them, measure RSS per connection and connect rate.
/// `storm`: the same clients connect all at once, drop, and all reconnect at once.
pub async fn idle(args: IdleArgs, storm: bool) -> anyhow::Result<bool> {
    let gateway = Arc::new(Gateway::new(args.target.clone()));
    eprintln!("setting up {} users in {} conversations (run {})", args.subscribers, args.conversations, gateway.run_id);
    gateway.setup(args.subscribers, args.conversations).await?;
    for conversation in 0..args.conversations {
        for first in (0..args.history).step_by(10) {
            gateway.publish(conversation, first as u64, (args.history - first).min(10)).await?;
        }
    }
    let usage = Usage::start(&args.target.server_pid);
    let concurrency = if storm { args.subscribers } else { CONNECT_CONCURRENCY };
    let start = Instant::now();
    let sockets = connect_all(&gateway, args.subscribers, args.conversations, concurrency).await?;
    let connect_seconds = start.elapsed().as_secs_f64();
    let held = usage.finish();
    tokio::time::sleep(Duration::from_secs(args.hold_seconds.min(600))).await;
    let mut extra = vec![
        ("connect_seconds", json!(round3(connect_seconds))),
        ("connects_per_s", json!(round3(args.subscribers as f64 / connect_seconds))),
    ];
    if let (Some(before), Some(after)) = (held.server_rss_before, held.server_rss_after) {
        let per_connection = after.saturating_sub(before) as f64 / args.subscribers as f64 / 1024.0;
        extra.push(("rss_kib_per_connection", json!(round3(per_connection))));
    }
    drop(sockets);
    if storm {
        // Every client reconnects at the same moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = Instant::now();
        let sockets = connect_all(&gateway, args.subscribers, args.conversations, args.subscribers).await?;
        extra.push(("reconnect_seconds", json!(round3(again.elapsed().as_secs_f64()))));
        drop(sockets);
    }
    let outcome = Outcome {
        scenario: if storm { "storm" } else { "idle" },
        mismatched_windows: 0,
        subscribers: args.subscribers,
        conversations: args.conversations,
        rate: 0.0,
        messages: 0,
        expected: 0,
        delivered: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        seconds: start.elapsed().as_secs_f64(),
        latency: Histogram::new(3).expect("histogram"),
        usage: held,
        timeline: Default::default(),
        extra,
    };
    finish(&outcome, &args.target)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Args, Clone, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent REST senders.
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
    /// Messages in all.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Conversations written to, round-robin.
    #[arg(long, default_value_t = 100)]
    pub conversations: usize,
    /// Messages per request (1 to 10).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

/// `write`: senders post as fast as acknowledgements come back; every acknowledgement is a durable commit.
pub async fn write(args: WriteArgs) -> anyhow::Result<bool> {
    let gateway = Arc::new(Gateway::new(args.target.clone()));
    gateway.setup(0, args.conversations).await?;
    let batch = args.batch.clamp(1, 10) as u64;
    let requests = args.messages.div_ceil(batch);
    let usage = Usage::start(&args.target.server_pid);
    let progress = progress_bar(args.target.quiet, requests, "requests");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..args.senders.max(1) {
        let (gateway, next, progress) = (gateway.clone(), next.clone(), progress.clone());
        let conversations = args.conversations;
        senders.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram");
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed);
                if request >= requests {
                    return Ok::<_, anyhow::Error>(latency);
                }
                let sent = now_micros();
                gateway.publish((request % conversations as u64) as usize, request * batch, batch as usize).await?;
                let _ = latency.record(now_micros().saturating_sub(sent).max(1));
                if let Some(progress) = &progress {
                    progress.inc(1);
                }
            }
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for sender in senders {
        latency.add(sender.await??)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.finish_and_clear();
    }
    let messages = requests * batch;
    let outcome = Outcome {
        scenario: "write",
        mismatched_windows: 0,
        subscribers: 0,
        conversations: args.conversations,
        rate: messages as f64 / seconds,
        messages,
        expected: messages,
        delivered: messages,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        seconds,
        latency,
        usage: usage.finish(),
        timeline: Default::default(),
        extra: vec![
            ("senders", json!(args.senders)),
            ("batch", json!(batch)),
            ("durable_messages_per_s", json!(round3(messages as f64 / seconds))),
        ],
    };
    finish(&outcome, &args.target)
}

#[derive(Args, Clone, Debug)]
pub struct MaxrateArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 100)]
    pub conversations: usize,
    /// The first rate tried, in messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub start_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Seconds of traffic per step.
    #[arg(long, default_value_t = 4.0)]
    pub step_seconds: f64,
    /// The most steps tried.
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// A step fails above this p99, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
}

/// Raises the rate until a step loses a message or its p99 passes the limit; reports the best clean step.
pub async fn maxrate(args: MaxrateArgs) -> anyhow::Result<bool> {
    let gateway = Arc::new(Gateway::new(args.target.clone()));
    eprintln!("setting up {} users in {} conversations (run {})", args.subscribers, args.conversations, gateway.run_id);
    gateway.setup(args.subscribers, args.conversations).await?;
    let mut rate = args.start_rate;
    let mut best: Option<Outcome> = None;
    for step in 0..args.max_steps {
        let fanout = FanoutArgs {
            target: Target { quiet: true, report: None, ..args.target.clone() },
            subscribers: args.subscribers,
            conversations: args.conversations,
            rate,
            messages: (rate * args.step_seconds) as u64,
            batch: args.batch,
            checked_clients: 0,
        };
        let outcome = run_fanout(&gateway, &fanout).await?;
        let sustained = outcome.is_clean() && outcome.p99_ms() <= args.p99_limit_ms;
        eprintln!(
            "step {step}: rate {rate:.0}/s, delivered {:.0}/s, p99 {:.2} ms, lost {}, {}",
            outcome.delivered_per_s(),
            outcome.p99_ms(),
            outcome.lost,
            if sustained { "sustained" } else { "not sustained" }
        );
        if !sustained {
            break;
        }
        best = Some(outcome);
        rate *= args.factor;
    }
    let Some(mut best) = best else {
        eprintln!("no rate was sustained");
        return Ok(false);
    };
    best.scenario = "maxrate";
    best.extra.push(("max_sustained_deliveries_per_s", json!(round3(best.delivered_per_s()))));
    finish(&best, &args.target)
}

/// The mean size of a delivered event frame, as the subscribers received it.
fn bytes_per_delivery(shared: &Shared) -> Option<u64> {
    let delivered = shared.delivered.load(Ordering::Relaxed);
    (delivered > 0).then(|| shared.delivered_bytes.load(Ordering::Relaxed) / delivered)
}
