//! `fsync`: how long the disk under a data directory takes to make a write durable, with no gateway involved.
//!
//! Every acknowledged write of the gateway waits for one `fdatasync` of its group's WAL frames, so the disk's own
//! sync latency is a floor under the gateway's write and delivery latency: a p99 target below the disk's p99 sync
//! cannot be met while every acknowledgement waits for a sync. This measures that floor the way the WAL is
//! written: appends of `--bytes`, each followed by `fdatasync`, one at a time, the file reused from its start
//! after `--file-bytes` (as a checkpointed WAL is). It also reports the CPU each durable append costs the thread
//! that makes it (its own CPU clock: user and kernel, the page copy and the sync), which the gateway's writer pays
//! once per group commit whatever the group holds.

use std::{
    fs::OpenOptions,
    io::{Seek, SeekFrom, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

#[derive(Args, Clone, Debug)]
pub struct FsyncArgs {
    /// The directory to measure (a gateway's `--data-dir`, or any directory on the same disk).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Syncs in all.
    #[arg(long, default_value_t = 2000)]
    pub syncs: u64,
    /// Bytes appended before each sync (a group of a few messages writes some tens of KiB of WAL frames).
    #[arg(long, default_value_t = 32 * 1024)]
    pub bytes: usize,
    /// The file is written from its start again past this size.
    #[arg(long, default_value_t = 16 << 20)]
    pub file_bytes: u64,
    /// Stops early after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub max_secs: u64,
    /// No human summary on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the syncs on a blocking thread and prints one JSON line.
pub async fn fsync(args: FsyncArgs) -> anyhow::Result<bool> {
    let quiet = args.quiet;
    let result = tokio::task::spawn_blocking(move || measure(&args)).await??;
    if !quiet {
        eprintln!(
            "fsync in {}: {} syncs of {} bytes, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms, {} syncs/s, {} us of CPU each",
            result["dir"].as_str().unwrap_or(""),
            result["syncs"],
            result["bytes"],
            result["p50_ms"],
            result["p99_ms"],
            result["p999_ms"],
            result["max_ms"],
            result["syncs_per_s"],
            result["cpu_us_per_sync"],
        );
    }
    println!("{result}");
    Ok(true)
}

fn measure(args: &FsyncArgs) -> anyhow::Result<Value> {
    let path = args.dir.join(format!("natter-load-fsync-{}.tmp", std::process::id()));
    let mut file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let outcome = sync_loop(&mut file, args);
    drop(file);
    std::fs::remove_file(&path)?;
    let Looped { latency, elapsed, cpu } = outcome?;
    let ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
    let syncs = latency.len();
    Ok(json!({
        "scenario": "fsync",
        "dir": args.dir.display().to_string(),
        "syncs": syncs,
        "bytes": args.bytes,
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": latency.max() as f64 / 1000.0,
        "syncs_per_s": (syncs as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "cpu_us_per_sync": (cpu.as_secs_f64() * 1e6 / syncs.max(1) as f64 * 10.0).round() / 10.0,
    }))
}

struct Looped {
    /// Each sync alone, in µs.
    latency: Histogram<u64>,
    elapsed: Duration,
    /// The thread's CPU time over the whole loop: appends and syncs.
    cpu: Duration,
}

/// The calling thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`: user and kernel, in ns).
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Appends and syncs until `syncs` are done or `max_secs` passed.
fn sync_loop(file: &mut std::fs::File, args: &FsyncArgs) -> anyhow::Result<Looped> {
    let mut latency = Histogram::<u64>::new(3)?;
    let chunk = vec![0x5a_u8; args.bytes.max(1)];
    let deadline = Duration::from_secs(args.max_secs);
    let started = Instant::now();
    let cpu_started = thread_cpu();
    let mut offset = 0u64;
    for _ in 0..args.syncs {
        if started.elapsed() > deadline {
            break;
        }
        if offset + chunk.len() as u64 > args.file_bytes.max(chunk.len() as u64) {
            offset = 0;
        }
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&chunk)?;
        offset += chunk.len() as u64;
        let sync_started = Instant::now();
        file.sync_data()?;
        latency.record(sync_started.elapsed().as_micros().max(1) as u64)?;
    }
    // The CPU clock is read first so that its span lies inside the wall clock's.
    let cpu = thread_cpu().saturating_sub(cpu_started);
    Ok(Looped { latency, elapsed: started.elapsed(), cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_each_sync_and_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("natter-load-fsync-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args =
            FsyncArgs { dir: dir.clone(), syncs: 25, bytes: 4096, file_bytes: 10 * 4096, max_secs: 30, quiet: true };
        let result = measure(&args).unwrap();
        assert_eq!(result["syncs"], 25);
        let (p50, p99, max) = (
            result["p50_ms"].as_f64().unwrap(),
            result["p99_ms"].as_f64().unwrap(),
            result["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{result}");
        assert!(result["syncs_per_s"].as_f64().unwrap() > 0.0);
        // Every append and sync costs the thread some CPU, and no more than the time the loop took.
        let cpu_us = result["cpu_us_per_sync"].as_f64().unwrap();
        assert!(cpu_us > 0.0, "{result}");
        assert!(cpu_us <= result["max_ms"].as_f64().unwrap() * 1000.0 + 1000.0, "{result}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the file is removed afterwards");

        // Written from its start again once it holds `file_bytes`: it never grows past them.
        let path = dir.join("wrap");
        let mut file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let looped = sync_loop(&mut file, &args).unwrap();
        assert_eq!(looped.latency.len(), 25);
        assert!(looped.cpu <= looped.elapsed, "one thread cannot use more CPU than the time it ran");
        assert_eq!(file.metadata().unwrap().len(), 10 * 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
