//! The single writer: a dedicated thread that owns the write connection and commits in groups.
//!
//! Every write is a job sent over a bounded channel. The thread takes the first job, drains whatever else is
//! already waiting (up to `MAX_JOBS_PER_COMMIT`), runs each job in its own savepoint inside one transaction, and
//! commits once: concurrent writers share one fsync. A job whose rules reject it is rolled back to its savepoint
//! alone. Before the commit, the events of every job that stood are appended to the event log in the same
//! transaction, so the log holds exactly what was committed. They are appended after the jobs, outside their
//! savepoints: the log's pages are then written once per group rather than copied into each job's savepoint.
//! Answers go out only after the commit returned, so an acknowledged write is durable.
//!
//! The same thread prunes the event log when asked (`Command::Prune`), between groups.

use std::collections::HashMap;

use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use super::super::{
    log::{self, LoggedEvent, Position, Retention},
    CommitListener, Committed, HasEvents, StoreError, StoreHooks, StoreResult,
};
use crate::domain::{
    event::Event,
    ids::{AppId, ConversationId, Seq},
    Millis,
};

/// Jobs waiting for the writer. When full, callers wait on `send` (async), which is the store's backpressure.
const JOB_QUEUE_CAPACITY: usize = 4096;
/// The most jobs one transaction commits; bounds the latency one commit adds to the first job of its group.
const MAX_JOBS_PER_COMMIT: usize = 512;

type Finish = Box<dyn FnOnce(bool) + Send>;
/// The events one job produced, not yet logged.
type Produced = (AppId, Vec<Event>);
/// Runs a write on the connection; says whether it succeeded, what events it produced, and how to answer its
/// caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Option<Produced>, Finish) + Send>;

enum Command {
    Write(Job),
    /// Prune the event log as of `now`; answers with how many events went.
    Prune {
        now: Millis,
        reply_tx: Option<oneshot::Sender<StoreResult<u64>>>,
    },
}

#[derive(Clone)]
pub struct Writer {
    commands_tx: mpsc::Sender<Command>,
}

/// A handle that does not keep the writer alive: it tells whether the store is still open.
pub struct WeakWriter {
    commands_tx: mpsc::WeakSender<Command>,
}

impl WeakWriter {
    pub fn is_alive(&self) -> bool {
        self.commands_tx.upgrade().is_some()
    }

    /// Asks the writer to prune the log, without waiting for it. Called from a plain thread.
    pub fn request_prune(&self, now: Millis) {
        if let Some(commands_tx) = self.commands_tx.upgrade() {
            // Full means the writer is busy with writes; the next interval tries again.
            let _ = commands_tx.try_send(Command::Prune { now, reply_tx: None });
        }
    }
}

impl Writer {
    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter { commands_tx: self.commands_tx.downgrade() }
    }

    /// Starts the writer thread on an open connection. The thread ends when the last `Writer` is dropped.
    pub fn spawn(connection: Connection, hooks: StoreHooks, retention: Retention) -> std::io::Result<Self> {
        let (commands_tx, commands_rx) = mpsc::channel(JOB_QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("natter-sqlite-writer".into())
            .spawn(move || run(connection, commands_rx, hooks, retention))?;
        Ok(Self { commands_tx })
    }

    /// Runs `work` in the next group commit, logs the events it returns, and returns its result once that commit
    /// is durable.
    pub async fn write<T, F>(&self, app: AppId, work: F) -> StoreResult<T>
    where
        T: HasEvents + Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer_tx, answer_rx) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = work(connection);
            let produced = match &result {
                Ok(value) if !value.events().is_empty() => Some((app, value.events().to_vec())),
                _ => None,
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let answer = if committed || result.is_err() {
                    result
                } else {
                    Err(StoreError::Unavailable("commit failed".into()))
                };
                // The caller may have gone away (request cancelled); the write stands regardless.
                let _ = answer_tx.send(answer);
            });
            (ok, produced, finish)
        });
        self.commands_tx.send(Command::Write(job)).await.map_err(|_| stopped())?;
        answer_rx.await.map_err(|_| stopped())?
    }

    /// Prunes the event log now, as of `now`.
    pub async fn prune(&self, now: Millis) -> StoreResult<u64> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx.send(Command::Prune { now, reply_tx: Some(reply_tx) }).await.map_err(|_| stopped())?;
        reply_rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("writer stopped".into())
}

/// Appends the group's events to the log, in commit order, and returns them with their positions.
fn append_to_log(
    connection: &Connection,
    produced: Vec<Produced>,
    committed_at: Millis,
) -> StoreResult<Vec<Committed>> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO event_log (app_id, conversation_id, seq, kind, data, committed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut batches = Vec::with_capacity(produced.len());
    for (app, events) in produced {
        let logged = log_events(&mut statement, connection, &app, events, committed_at)?;
        batches.push(Committed { app, events: logged });
    }
    Ok(batches)
}

fn log_events(
    statement: &mut rusqlite::CachedStatement<'_>,
    connection: &Connection,
    app: &AppId,
    events: Vec<Event>,
    committed_at: Millis,
) -> StoreResult<Vec<LoggedEvent>> {
    let mut logged = Vec::with_capacity(events.len());
    for event in events {
        let (kind, data) = log::encode(&event.kind);
        statement.execute(params![
            app.as_str(),
            event.conversation_id.as_str(),
            event.seq.0,
            kind,
            data,
            committed_at
        ])?;
        logged.push(LoggedEvent {
            position: Position(connection.last_insert_rowid()),
            app: app.clone(),
            event,
            committed_at,
        });
    }
    Ok(logged)
}

/// The newest seq logged per conversation since the last pruning pass: where the per-conversation cap applies.
/// Nested, so that noting an event of a conversation already noted allocates nothing.
type Touched = HashMap<AppId, HashMap<ConversationId, Seq>>;

fn run(connection: Connection, mut commands_rx: mpsc::Receiver<Command>, hooks: StoreHooks, retention: Retention) {
    let mut group = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    let mut touched = Touched::new();
    while let Some(first) = commands_rx.blocking_recv() {
        let mut prunes = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job) => group.push(job),
                Command::Prune { now, reply_tx } => prunes.push((now, reply_tx)),
            }
            if group.len() < MAX_JOBS_PER_COMMIT {
                next = commands_rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            let started = std::time::Instant::now();
            let jobs = group.len();
            commit_group(&connection, &mut group, hooks.listener.as_deref(), &mut touched);
            if let Some(observe) = &hooks.observe_commit {
                observe(started.elapsed(), jobs);
            }
        }
        for (now, reply_tx) in prunes {
            let result = prune(&connection, &retention, now, &mut touched);
            if let Err(error) = &result {
                tracing::warn!(cause = %error, "event log pruning failed");
            }
            if let Some(reply_tx) = reply_tx {
                let _ = reply_tx.send(result);
            }
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Runs a transaction-control statement, prepared once and cached: these run several times per commit.
fn control(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

/// The wall clock in Unix milliseconds: the commit time the log records.
fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as Millis)
}

fn commit_group(
    connection: &Connection,
    group: &mut Vec<Job>,
    listener: Option<&dyn CommitListener>,
    touched: &mut Touched,
) {
    let mut finishes = Vec::with_capacity(group.len());
    let mut produced = Vec::new();
    if let Err(error) = control(connection, "BEGIN IMMEDIATE") {
        tracing::error!(cause = %error, "cannot begin write transaction");
        for job in group.drain(..) {
            // Run nothing; dropping the job tells its caller the store is unavailable.
            drop(job);
        }
        return;
    }
    for job in group.drain(..) {
        let savepoint = control(connection, "SAVEPOINT job");
        let (ok, events, finish) = job(connection);
        let closed = if ok && savepoint.is_ok() {
            control(connection, "RELEASE job")
        } else {
            control(connection, "ROLLBACK TO job").and_then(|()| control(connection, "RELEASE job"))
        };
        if let Err(error) = closed {
            tracing::error!(cause = %error, "cannot close savepoint");
        }
        if ok {
            produced.extend(events);
        }
        finishes.push(finish);
    }
    // A log that cannot be written fails the whole group: nothing is committed that the log does not hold.
    let logged = append_to_log(connection, produced, now_millis());
    let (committed, committed_events) = match logged.and_then(|batches| {
        control(connection, "COMMIT")?;
        Ok(batches)
    }) {
        Ok(batches) => (true, batches),
        Err(error) => {
            tracing::error!(cause = %error, "group commit failed");
            let _ = control(connection, "ROLLBACK");
            (false, Vec::new())
        }
    };
    if committed {
        for batch in &committed_events {
            for logged in &batch.events {
                let (conversation, seq) = (&logged.event.conversation_id, logged.event.seq);
                let conversations = match touched.get_mut(&logged.app) {
                    Some(conversations) => conversations,
                    None => touched.entry(logged.app.clone()).or_default(),
                };
                match conversations.get_mut(conversation) {
                    Some(last) => *last = (*last).max(seq),
                    None => {
                        conversations.insert(conversation.clone(), seq);
                    }
                }
            }
        }
        if let Some(listener) = listener {
            // In commit order, before anyone is answered: whoever reads after the answer sees the event too.
            for batch in &committed_events {
                listener.committed(batch);
            }
        }
    }
    for finish in finishes {
        finish(committed);
    }
}

/// Deletes what the retention policy no longer keeps: events older than its age, and of each conversation written
/// since the last pass, all but the newest `max_events_per_conversation`. At most `MAX_PRUNED_PER_PASS` by age.
fn prune(connection: &Connection, retention: &Retention, now: Millis, touched: &mut Touched) -> StoreResult<u64> {
    control(connection, "BEGIN IMMEDIATE")?;
    let result = prune_in_transaction(connection, retention, now, touched);
    match &result {
        Ok(_) => control(connection, "COMMIT")?,
        Err(_) => {
            let _ = control(connection, "ROLLBACK");
        }
    }
    result
}

fn prune_in_transaction(
    connection: &Connection,
    retention: &Retention,
    now: Millis,
    touched: &mut Touched,
) -> StoreResult<u64> {
    let cutoff = retention.oldest_kept(now);
    // Positions follow commit time, so the old events are the first ones: find where they end without a scan
    // past them (a query `WHERE committed_at < ?` would read the whole table).
    let mut boundary = None;
    {
        let mut statement =
            connection.prepare_cached("SELECT position, committed_at FROM event_log ORDER BY position LIMIT ?1")?;
        let mut rows = statement.query(params![log::MAX_PRUNED_PER_PASS as i64])?;
        while let Some(row) = rows.next()? {
            let (position, committed_at): (i64, Millis) = (row.get(0)?, row.get(1)?);
            if committed_at >= cutoff {
                break;
            }
            boundary = Some(position);
        }
    }
    let mut pruned = 0;
    if let Some(boundary) = boundary {
        // The newest row stays whatever its age: the next position is one more than it.
        let newest: i64 =
            connection.prepare_cached("SELECT MAX(position) FROM event_log")?.query_row([], |row| row.get(0))?;
        pruned += connection
            .prepare_cached("DELETE FROM event_log WHERE position <= ?1")?
            .execute(params![boundary.min(newest - 1)])? as u64;
    }
    // At least one event of each conversation stays, for the same reason.
    let cap = retention.max_events_per_conversation.clamp(1, i64::MAX as u64) as i64;
    let mut statement =
        connection.prepare_cached("DELETE FROM event_log WHERE app_id = ?1 AND conversation_id = ?2 AND seq <= ?3")?;
    for (app, conversations) in touched.drain() {
        for (conversation, last_seq) in conversations {
            if last_seq.0 > cap {
                pruned += statement.execute(params![app.as_str(), conversation.as_str(), last_seq.0 - cap])? as u64;
            }
        }
    }
    Ok(pruned)
}
