//! The single writer: a dedicated thread that owns the write connection and commits in groups.
//!
//! Every write is a job sent over a bounded channel. The thread takes the first job, drains whatever else is
//! already waiting (up to `MAX_JOBS_PER_COMMIT`), runs each job in its own savepoint inside one transaction, and
//! commits once: concurrent writers share one fsync. A job whose rules reject it is rolled back to its savepoint
//! alone. Answers go out only after the commit returned, so an acknowledged write is durable.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::super::{Committed, CommittedSink, HasEvents, StoreError, StoreHooks, StoreResult};
use crate::domain::ids::AppId;

/// Jobs waiting for the writer. When full, callers wait on `send` (async), which is the store's backpressure.
const JOB_QUEUE_CAPACITY: usize = 4096;
/// The most jobs one transaction commits; bounds the latency one commit adds to the first job of its group.
const MAX_JOBS_PER_COMMIT: usize = 512;

type Finish = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Option<Committed>, Finish) + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs_tx: mpsc::Sender<Job>,
}

/// A handle that does not keep the writer alive: it tells whether the store is still open.
pub struct WeakWriter {
    jobs_tx: mpsc::WeakSender<Job>,
}

impl WeakWriter {
    pub fn is_alive(&self) -> bool {
        self.jobs_tx.upgrade().is_some()
    }
}

impl Writer {
    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter { jobs_tx: self.jobs_tx.downgrade() }
    }

    /// Starts the writer thread on an open connection. The thread ends when the last `Writer` is dropped.
    pub fn spawn(connection: Connection, hooks: StoreHooks) -> std::io::Result<Self> {
        let (jobs_tx, jobs_rx) = mpsc::channel(JOB_QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("natter-sqlite-writer".into())
            .spawn(move || run(connection, jobs_rx, hooks))?;
        Ok(Self { jobs_tx })
    }

    /// Runs `work` in the next group commit and returns its result once that commit is durable.
    pub async fn write<T, F>(&self, app: AppId, work: F) -> StoreResult<T>
    where
        T: HasEvents + Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer_tx, answer_rx) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = work(connection);
            let ok = result.is_ok();
            let committed = match &result {
                Ok(value) if !value.events().is_empty() => Some(Committed { app, events: value.events().to_vec() }),
                _ => None,
            };
            let finish: Finish = Box::new(move |committed| {
                let answer = if committed || result.is_err() {
                    result
                } else {
                    Err(StoreError::Unavailable("commit failed".into()))
                };
                // The caller may have gone away (request cancelled); the write stands regardless.
                let _ = answer_tx.send(answer);
            });
            (ok, committed, finish)
        });
        self.jobs_tx.send(job).await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        answer_rx.await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }
}

fn run(connection: Connection, mut jobs_rx: mpsc::Receiver<Job>, hooks: StoreHooks) {
    let mut group = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    while let Some(first) = jobs_rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_JOBS_PER_COMMIT {
            match jobs_rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let jobs = group.len();
        commit_group(&connection, &mut group, hooks.committed.as_ref());
        if let Some(observe) = &hooks.observe_commit {
            observe(started.elapsed(), jobs);
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Runs a transaction-control statement, prepared once and cached: these run several times per commit.
fn control(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

fn commit_group(connection: &Connection, group: &mut Vec<Job>, committed_sink: Option<&CommittedSink>) {
    let mut finishes = Vec::with_capacity(group.len());
    let mut committed_events = Vec::new();
    if let Err(error) = control(connection, "BEGIN IMMEDIATE") {
        tracing::error!(cause = %error, "cannot begin write transaction");
        for job in group.drain(..) {
            // Run nothing; tell each caller the store is unavailable.
            drop(job);
        }
        return;
    }
    for job in group.drain(..) {
        let savepoint = control(connection, "SAVEPOINT job");
        let (ok, committed, finish) = job(connection);
        let closed = if ok && savepoint.is_ok() {
            control(connection, "RELEASE job")
        } else {
            control(connection, "ROLLBACK TO job").and_then(|()| control(connection, "RELEASE job"))
        };
        if let Err(error) = closed {
            tracing::error!(cause = %error, "cannot close savepoint");
        }
        if ok {
            committed_events.extend(committed);
        }
        finishes.push(finish);
    }
    let committed = match control(connection, "COMMIT") {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(cause = %error, "group commit failed");
            let _ = control(connection, "ROLLBACK");
            false
        }
    };
    if committed {
        if let Some(committed_sink) = committed_sink {
            // In commit order, before anyone is answered: whoever reads after the answer sees the event too.
            for events in committed_events {
                committed_sink(events);
            }
        }
    }
    for finish in finishes {
        finish(committed);
    }
}
