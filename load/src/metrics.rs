//! What a run measured, sampled while it runs: throughput over time and the gateway's CPU and memory.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use crate::{
    gateway::{sample_process, sample_processes, ProcessSample},
    subscriber::Shared,
};

/// Samples delivered counts (and the gateway's RSS) every `TICK` until stopped.
pub struct Sampler {
    stop_tx: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Timeline>,
}

#[derive(Default, Clone)]
pub struct Timeline {
    /// (seconds since start, deliveries per second in the tick before)
    pub throughput: Vec<(f64, f64)>,
    pub peak_rss_bytes: u64,
}

const TICK: Duration = Duration::from_millis(250);

impl Sampler {
    pub fn start(shared: Arc<Shared>, server_pids: Vec<u32>, progress: Option<indicatif::ProgressBar>) -> Self {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut timeline = Timeline::default();
            let mut last = 0u64;
            let mut interval = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                let delivered = shared.delivered.load(Ordering::Relaxed);
                timeline
                    .throughput
                    .push((start.elapsed().as_secs_f64(), (delivered - last) as f64 / TICK.as_secs_f64()));
                last = delivered;
                if let Some(sample) = sample_processes(&server_pids) {
                    timeline.peak_rss_bytes = timeline.peak_rss_bytes.max(sample.rss_bytes);
                }
                if let Some(progress) = &progress {
                    progress.set_position(delivered);
                }
            }
            timeline
        });
        Self { stop_tx, task }
    }

    pub async fn stop(self) -> Timeline {
        let _ = self.stop_tx.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The gateway's and the harness's CPU and memory between two points of a run.
pub struct Usage {
    server_before: Option<ProcessSample>,
    harness_before: Option<ProcessSample>,
    server_pids: Vec<u32>,
    /// Each node's CPU seconds at the start, for the per-node split.
    per_node_before: Vec<Option<f64>>,
}

#[derive(Clone, Debug, Default)]
pub struct UsageReport {
    pub server_cpu_s: Option<f64>,
    pub server_rss_before: Option<u64>,
    pub server_rss_after: Option<u64>,
    pub harness_cpu_s: Option<f64>,
    /// With several nodes: each one's CPU seconds, in the order of `--server-pid`.
    pub per_node_cpu_s: Option<Vec<f64>>,
}

impl Usage {
    pub fn start(server_pids: &[u32]) -> Self {
        Self {
            server_before: sample_processes(server_pids),
            harness_before: sample_process(std::process::id()),
            per_node_before: server_pids.iter().map(|&pid| sample_process(pid).map(|s| s.cpu_seconds)).collect(),
            server_pids: server_pids.to_vec(),
        }
    }

    pub fn finish(&self) -> UsageReport {
        let server_after = sample_processes(&self.server_pids);
        let per_node_cpu_s = self
            .server_pids
            .iter()
            .zip(&self.per_node_before)
            .map(|(&pid, before)| Some(sample_process(pid)?.cpu_seconds - (*before)?))
            .collect::<Option<Vec<f64>>>()
            .filter(|nodes| nodes.len() > 1);
        let harness_after = sample_process(std::process::id());
        UsageReport {
            server_cpu_s: self.server_before.zip(server_after).map(|(a, b)| b.cpu_seconds - a.cpu_seconds),
            server_rss_before: self.server_before.map(|s| s.rss_bytes),
            server_rss_after: server_after.map(|s| s.rss_bytes),
            harness_cpu_s: self.harness_before.zip(harness_after).map(|(a, b)| b.cpu_seconds - a.cpu_seconds),
            per_node_cpu_s,
        }
    }
}

pub fn progress_bar(quiet: bool, length: u64, message: &str) -> Option<indicatif::ProgressBar> {
    if quiet {
        return None;
    }
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})")
            .expect("valid template"),
    );
    bar.set_message(message.to_owned());
    Some(bar)
}
