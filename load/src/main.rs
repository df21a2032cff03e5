//! `natter-load`: drives a running Natter gateway the way real clients do, and reports what a user needs to know
//! before production: loss, duplicates, ordering, latency percentiles, throughput, and the gateway's CPU and memory.
//!
//! Every run creates its own users and conversations through REST (named with a run id), mints user tokens with
//! the app secret, and sends traffic only to the `--url` given. Every loop is bounded in count and time.

mod checked;
mod disk;
mod gateway;
mod inbox;
mod metrics;
mod report;
mod scenarios;
mod subscriber;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Load scenarios for a Natter gateway")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// C subscribers over K conversations; REST publishers at R messages/s; loss, order, latency, CPU per delivery.
    Fanout(scenarios::FanoutArgs),
    /// C idle subscribed connections: gateway RSS per connection and connect+subscribe rate.
    Idle(scenarios::IdleArgs),
    /// C clients connect and subscribe at once, then all reconnect at once: time to all active.
    Storm(scenarios::IdleArgs),
    /// Many concurrent REST senders: durable messages/s and latency.
    Write(scenarios::WriteArgs),
    /// Raises the fanout rate step by step until loss or p99 over 50 ms: the highest sustainable delivery rate.
    Maxrate(scenarios::MaxrateArgs),
    /// U users with many conversations each hold a conversation list while messages reorder them: time to
    /// visible, list frames per message, CPU per message, and lists that match a fresh read at the end.
    Inbox(inbox::InboxArgs),
    /// No gateway: appends and `fdatasync`s in a directory one at a time, the floor under durable write latency.
    Fsync(disk::FsyncArgs),
}

/// Where the gateway is and how to act on it.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The gateway's base URL (REST); the WebSocket URL is derived from it. Several nodes of one cluster:
    /// comma-separated; subscribers and publishers are spread over them round-robin.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    pub url: Vec<String>,
    /// App id.
    #[arg(long, env = "NATTER_LOAD_APP")]
    pub app: String,
    /// App secret: used for REST and to mint user tokens.
    #[arg(long, env = "NATTER_LOAD_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The gateway's process id, when it runs on this host: adds its CPU and RSS to the report (several nodes:
    /// comma-separated; the report gives their sum, and each node's CPU).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Writes an SVG with the latency distribution and throughput over time.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Prefix for the users and conversations this run creates (default: a fresh random one).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Many sockets need many file descriptors: raise the soft limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let cli = Cli::parse();
    let ok = match cli.scenario {
        Scenario::Fanout(args) => scenarios::fanout(args).await?,
        Scenario::Idle(args) => scenarios::idle(args, false).await?,
        Scenario::Storm(args) => scenarios::idle(args, true).await?,
        Scenario::Write(args) => scenarios::write(args).await?,
        Scenario::Maxrate(args) => scenarios::maxrate(args).await?,
        Scenario::Inbox(args) => inbox::inbox(args).await?,
        Scenario::Fsync(args) => disk::fsync(args).await?,
    };
    if !ok {
        // Loss, duplicates or disorder: a failed run, for CI and scripts.
        std::process::exit(2);
    }
    Ok(())
}
