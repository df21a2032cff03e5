//! The single writer of a node: a dedicated thread that owns the write connection and commits in groups.
//!
//! Every write is a job sent over a bounded channel. The thread takes the first job, drains whatever else is
//! already waiting (up to `MAX_JOBS_PER_COMMIT`), runs the jobs one after another inside one transaction, and
//! commits once: concurrent writers share one fsync. A job whose rules reject it is undone alone: the jobs first
//! run without savepoints (a savepoint copies every page a job touches into SQLite's statement journal), and when
//! one fails the transaction is rolled back and the group run again with each job in its own savepoint, which the
//! next `CAREFUL_GROUPS` groups keep doing. A job is therefore a closure that can run twice. Before the commit,
//! the events of every job that stood are appended to the event log in the same transaction, so the log holds
//! exactly what was committed. They are appended after the jobs, outside any savepoint: the log's pages are then
//! written once per group rather than copied into each job's savepoint.
//! Answers go out only after the commit returned, so an acknowledged write is durable.
//!
//! The same thread prunes the event log when asked (`Command::Prune`), and runs a backend's own upkeep on the
//! write connection (`Command::Upkeep`, SQLite's end of a checkpoint), between groups. A connection the server
//! closed (a database restart) is replaced before the next group; while none can be opened, writes fail at once.

use std::{collections::HashMap, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::{args, now_millis, Db};
use crate::domain::{
    event::Logged,
    ids::{AppId, ConversationId, Seq},
    Millis,
};
use crate::store::{
    log::{self, LoggedEvent, Position, Retention},
    CommitListener, Committed, HasEvents, StoreError, StoreHooks, StoreResult,
};

/// Jobs waiting for the writer. When full, callers wait on `send` (async), which is the store's backpressure.
const JOB_QUEUE_CAPACITY: usize = 4096;
/// The most jobs one transaction commits; bounds the latency one commit adds to the first job of its group.
const MAX_JOBS_PER_COMMIT: usize = 512;

/// How many groups after one whose job failed run each job in its own savepoint: a stream of rejected writes
/// costs a savepoint per job, as it always did, plus one group run twice every `CAREFUL_GROUPS`.
const CAREFUL_GROUPS: u32 = 16;

/// The events one job produced, not yet logged.
type Produced = (AppId, Vec<Logged>);

/// A write waiting for its group commit.
trait Job: Send {
    /// The app it writes to.
    fn app(&self) -> &AppId;
    /// Runs the write on the connection; says how it ended. Runs again, on the state before its first run, when
    /// the group is started over.
    fn run(&mut self, db: &dyn Db) -> Outcome;
    /// Answers the caller with the last run's result, once the commit's outcome is known.
    fn finish(self: Box<Self>, committed: bool);
}

/// How a job's run ended.
enum Outcome {
    /// It stood, with the events it produced.
    Stood(Option<Produced>),
    /// It refused the write: the input broke a rule (`StoreError::Rejected`).
    Rejected,
    /// The store could not do it.
    Failed,
}

struct WriteJob<T, F> {
    app: AppId,
    work: F,
    result: Option<StoreResult<T>>,
    answer_tx: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: HasEvents + Send + 'static,
    F: FnMut(&dyn Db) -> StoreResult<T> + Send + 'static,
{
    fn app(&self) -> &AppId {
        &self.app
    }

    fn run(&mut self, db: &dyn Db) -> Outcome {
        let result = (self.work)(db);
        let outcome = match &result {
            Ok(value) => {
                Outcome::Stood(Some((self.app.clone(), value.logged())).filter(|(_, logged)| !logged.is_empty()))
            }
            Err(StoreError::Rejected(_)) => Outcome::Rejected,
            Err(StoreError::Unavailable(_)) => Outcome::Failed,
        };
        self.result = Some(result);
        outcome
    }

    fn finish(self: Box<Self>, committed: bool) {
        let answer = match self.result {
            Some(result) if committed || result.is_err() => result,
            _ => Err(StoreError::Unavailable("commit failed".into())),
        };
        // The caller may have gone away (request cancelled); the write stands regardless.
        let _ = self.answer_tx.send(answer);
    }
}
/// Upkeep the backend runs on the write connection between groups.
pub type Upkeep = Box<dyn FnOnce(&dyn Db) + Send>;
/// Opens a new write connection, when the one the writer holds is broken.
pub type Reconnect = Box<dyn Fn() -> StoreResult<Box<dyn Db>> + Send>;

enum Command {
    Write(Box<dyn Job>),
    /// Prune the event log as of `now`; answers with how many events went.
    Prune {
        now: Millis,
        reply_tx: Option<oneshot::Sender<StoreResult<u64>>>,
    },
    Upkeep(Upkeep),
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

    /// Asks the writer to run `upkeep` between two groups, without waiting for it.
    pub fn request_upkeep(&self, upkeep: Upkeep) {
        if let Some(commands_tx) = self.commands_tx.upgrade() {
            // Full means the writer is busy with writes; the next interval asks again.
            let _ = commands_tx.try_send(Command::Upkeep(upkeep));
        }
    }
}

impl Writer {
    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter { commands_tx: self.commands_tx.downgrade() }
    }

    /// Starts the writer thread on an open connection. The thread ends when the last `Writer` is dropped.
    pub fn spawn(db: Box<dyn Db>, reconnect: Reconnect, hooks: StoreHooks, retention: Retention) -> StoreResult<Self> {
        let (commands_tx, commands_rx) = mpsc::channel(JOB_QUEUE_CAPACITY);
        let writer = Connected { db, reconnect };
        std::thread::Builder::new()
            .name("natter-store-writer".into())
            .spawn(move || run(writer, commands_rx, hooks, retention))
            .map_err(|error| StoreError::Unavailable(format!("cannot start the writer: {error}")))?;
        Ok(Self { commands_tx })
    }

    /// Runs `work` in the next group commit, logs the events it returns, and returns its result once that commit
    /// is durable. `work` may run twice (see the module's note); only the last run's writes are committed.
    pub async fn write<T, F>(&self, app: AppId, work: F) -> StoreResult<T>
    where
        T: HasEvents + Send + 'static,
        F: FnMut(&dyn Db) -> StoreResult<T> + Send + 'static,
    {
        let (answer_tx, answer_rx) = oneshot::channel();
        let job = Box::new(WriteJob { app, work, result: None, answer_tx });
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
    StoreError::Unavailable("the store cannot write (the database is unreachable, or the store was closed)".into())
}

/// How often the pruner asks the writer to apply the retention policy.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Asks the writer to prune the event log every `PRUNE_INTERVAL`, until the store is dropped.
pub fn spawn_pruner(writer: WeakWriter) -> StoreResult<()> {
    std::thread::Builder::new()
        .name("natter-store-pruner".into())
        .spawn(move || {
            let mut last_prune = std::time::Instant::now();
            while writer.is_alive() {
                std::thread::sleep(Duration::from_millis(500));
                if last_prune.elapsed() >= PRUNE_INTERVAL {
                    last_prune = std::time::Instant::now();
                    writer.request_prune(now_millis());
                }
            }
        })
        .map_err(|error| StoreError::Unavailable(format!("cannot start the pruner: {error}")))?;
    Ok(())
}

/// The write connection, and how to replace it.
struct Connected {
    db: Box<dyn Db>,
    reconnect: Reconnect,
}

impl Connected {
    /// The connection to write on, replaced first if the server closed it; `None` while no new one opens.
    fn usable(&mut self) -> Option<&dyn Db> {
        if self.db.is_broken() {
            match (self.reconnect)() {
                Ok(db) => {
                    tracing::info!("write connection reopened");
                    self.db = db;
                }
                Err(error) => {
                    tracing::warn!(cause = %error, "cannot reopen the write connection");
                    return None;
                }
            }
        }
        Some(&*self.db)
    }
}

/// Appends the group's events to the log, in commit order, and returns them with their positions.
fn append_to_log(db: &dyn Db, produced: Vec<Produced>, committed_at: Millis) -> StoreResult<Vec<Committed>> {
    let mut batches = Vec::with_capacity(produced.len());
    for (app, events) in produced {
        let logged = log_events(db, &app, events, committed_at)?;
        batches.push(Committed { app, events: logged });
    }
    Ok(batches)
}

fn log_events(
    db: &dyn Db,
    app: &AppId,
    events: Vec<Logged>,
    committed_at: Millis,
) -> StoreResult<Vec<LoggedEvent<Logged>>> {
    let mut logged = Vec::with_capacity(events.len());
    for event in events {
        let (stream, stream_id, seq, kind, data) = log::encode_logged(&event);
        // The backend assigns the position (SQLite's rowid, PostgreSQL's sequence) while this app's writes are
        // held to one transaction at a time (`Db::begin_write`), so positions follow commit order.
        let position = db.insert_returning_key(
            "INSERT INTO event_log (app_id, stream, stream_id, seq, kind, data, committed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            "position",
            args![app.as_str(), stream, stream_id, seq.0, kind, data, committed_at],
        )?;
        logged.push(LoggedEvent { position: Position(position), app: app.clone(), event, committed_at });
    }
    Ok(logged)
}

/// The newest seq logged per conversation since the last pruning pass: where the per-conversation cap applies.
/// Nested, so that noting an event of a conversation already noted allocates nothing.
type Touched = HashMap<AppId, HashMap<ConversationId, Seq>>;

fn run(mut writer: Connected, mut commands_rx: mpsc::Receiver<Command>, hooks: StoreHooks, retention: Retention) {
    let mut group = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    let mut touched = Touched::new();
    let mut careful = 0;
    while let Some(first) = commands_rx.blocking_recv() {
        let mut prunes = Vec::new();
        let mut upkeeps = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job) => group.push(job),
                Command::Prune { now, reply_tx } => prunes.push((now, reply_tx)),
                Command::Upkeep(upkeep) => upkeeps.push(upkeep),
            }
            if group.len() < MAX_JOBS_PER_COMMIT {
                next = commands_rx.try_recv().ok();
            }
        }
        let Some(db) = writer.usable() else {
            // Dropping the jobs and the prune requests tells their callers the store cannot write.
            group.clear();
            continue;
        };
        if !group.is_empty() {
            let started = std::time::Instant::now();
            let jobs = group.len();
            commit_group(db, &mut group, hooks.listener.as_deref(), &mut touched, &mut careful);
            if let Some(observe) = &hooks.observe_commit {
                observe(started.elapsed(), jobs);
            }
        }
        for (now, reply_tx) in prunes {
            let result = prune(db, &retention, now, &mut touched);
            if let Err(error) = &result {
                tracing::warn!(cause = %error, "event log pruning failed");
            }
            if let Some(reply_tx) = reply_tx {
                let _ = reply_tx.send(result);
            }
        }
        for upkeep in upkeeps {
            upkeep(db);
        }
    }
    tracing::debug!("store writer stopped");
}

fn commit_group(
    db: &dyn Db,
    group: &mut Vec<Box<dyn Job>>,
    listener: Option<&dyn CommitListener>,
    touched: &mut Touched,
    careful: &mut u32,
) {
    // The distinct apps of the group, sorted: the order in which a backend takes their write locks.
    // Owned, as the jobs are run (mutably) while they are held; usually one.
    let mut apps: Vec<&AppId> = group.iter().map(|job| job.app()).collect();
    apps.sort_unstable();
    apps.dedup();
    let apps: Vec<AppId> = apps.into_iter().cloned().collect();
    let apps: Vec<&AppId> = apps.iter().collect();
    if let Err(error) = db.begin_write(&apps) {
        tracing::error!(cause = %error, "cannot begin write transaction");
        let _ = db.batch("ROLLBACK");
        // Run nothing; dropping the jobs tells their callers the store is unavailable.
        group.clear();
        return;
    }
    let isolated = *careful > 0;
    *careful = careful.saturating_sub(1);
    let mut produced = run_jobs(db, group, isolated);
    if produced.is_none() {
        // A job failed, perhaps after writing, with no savepoint to undo it alone: start the group over.
        *careful = CAREFUL_GROUPS;
        if let Err(error) = db.batch("ROLLBACK").and_then(|()| db.begin_write(&apps)) {
            tracing::error!(cause = %error, "cannot begin write transaction again");
            let _ = db.batch("ROLLBACK");
            for job in group.drain(..) {
                job.finish(false);
            }
            return;
        }
        produced = run_jobs(db, group, true);
    }
    let produced = produced.unwrap_or_default();
    // A log that cannot be written fails the whole group: nothing is committed that the log does not hold.
    let logged = append_to_log(db, produced, now_millis());
    let (committed, committed_events) = match logged.and_then(|batches| {
        db.batch("COMMIT")?;
        Ok(batches)
    }) {
        Ok(batches) => (true, batches),
        Err(error) => {
            tracing::error!(cause = %error, "group commit failed");
            let _ = db.batch("ROLLBACK");
            (false, Vec::new())
        }
    };
    if committed {
        for batch in &committed_events {
            for logged in &batch.events {
                let Some(event) = logged.event.conversation() else { continue };
                let (conversation, seq) = (&event.conversation_id, event.seq);
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
    for job in group.drain(..) {
        job.finish(committed);
    }
}

/// Runs the group's jobs in order in the open transaction and gathers the events of those that stood. Isolated,
/// each job runs in its own savepoint and one that fails is rolled back to it alone; otherwise the first job that
/// fails ends the run with `None`, leaving the transaction to be rolled back, unless it was rejected before it
/// wrote anything (the backend's count of written rows did not move): then there is nothing to undo.
fn run_jobs(db: &dyn Db, group: &mut [Box<dyn Job>], isolated: bool) -> Option<Vec<Produced>> {
    let mut produced = Vec::new();
    for job in group.iter_mut() {
        if !isolated {
            let written_before = db.rows_written();
            match job.run(db) {
                Outcome::Stood(events) => produced.extend(events),
                Outcome::Rejected if written_before.is_some() && db.rows_written() == written_before => {}
                Outcome::Rejected | Outcome::Failed => return None,
            }
            continue;
        }
        let savepoint = db.batch("SAVEPOINT job");
        let outcome = job.run(db);
        let ok = matches!(outcome, Outcome::Stood(_));
        let closed = if ok && savepoint.is_ok() {
            db.batch("RELEASE job")
        } else {
            db.batch("ROLLBACK TO job").and_then(|()| db.batch("RELEASE job"))
        };
        if let Err(error) = closed {
            tracing::error!(cause = %error, "cannot close savepoint");
        }
        if let Outcome::Stood(events) = outcome {
            produced.extend(events);
        }
    }
    Some(produced)
}

/// Deletes what the retention policy no longer keeps: events older than its age, and of each conversation written
/// since the last pass, all but the newest `max_events_per_conversation`. At most `MAX_PRUNED_PER_PASS` by age.
fn prune(db: &dyn Db, retention: &Retention, now: Millis, touched: &mut Touched) -> StoreResult<u64> {
    db.begin_write(&[])?;
    let result = prune_in_transaction(db, retention, now, touched);
    match &result {
        Ok(_) => db.batch("COMMIT")?,
        Err(_) => {
            let _ = db.batch("ROLLBACK");
        }
    }
    result
}

fn prune_in_transaction(db: &dyn Db, retention: &Retention, now: Millis, touched: &mut Touched) -> StoreResult<u64> {
    let cutoff = retention.oldest_kept(now);
    // Positions follow commit time, so the old events are the first ones: find where they end without a scan
    // past them (a query `WHERE committed_at < ?` would read the whole table).
    let mut boundary = None;
    let oldest = db.rows(
        "SELECT position, committed_at FROM event_log ORDER BY position LIMIT ?1",
        args![log::MAX_PRUNED_PER_PASS as i64],
        |row| Ok((row.i64(0)?, row.i64(1)?)),
    )?;
    for (position, committed_at) in oldest {
        if committed_at >= cutoff {
            break;
        }
        boundary = Some(position);
    }
    let mut pruned = 0;
    if let Some(boundary) = boundary {
        // The newest row stays whatever its age: SQLite's next position is one more than it.
        let newest = db.one("SELECT MAX(position) FROM event_log", args![], |row| row.i64(0))?;
        pruned += db.execute("DELETE FROM event_log WHERE position <= ?1", args![boundary.min(newest - 1)])?;
    }
    // At least one event of each conversation stays, for the same reason. A busy conversation's old events stay
    // while a live webhook endpoint of the app has not been given them (by age they go: the age is far longer than
    // webhooks retry).
    let cap = retention.max_events_per_conversation.clamp(1, i64::MAX as u64) as i64;
    for (app, conversations) in touched.drain() {
        let floor = webhook_floor(db, &app, now)?;
        for (conversation, last_seq) in conversations {
            if last_seq.0 > cap {
                pruned += db.execute(
                    "DELETE FROM event_log WHERE app_id = ?1 AND stream = 'c' AND stream_id = ?2 AND seq <= ?3 \
                     AND position <= ?4",
                    args![app.as_str(), conversation.as_str(), last_seq.0 - cap, floor],
                )?;
            }
        }
    }
    Ok(pruned)
}

/// The position up to which every live webhook endpoint of the app has been given its events (all of them when
/// there is none). An endpoint whose lease lapsed a day ago is no longer live: it holds nothing back.
fn webhook_floor(db: &dyn Db, app: &AppId, now: Millis) -> StoreResult<i64> {
    const LIVE_FOR: Millis = 24 * 60 * 60 * 1000;
    db.one(
        "SELECT COALESCE(MIN(position), ?3) FROM webhook_cursors WHERE app_id = ?1 AND lease_until > ?2",
        args![app.as_str(), now - LIVE_FOR, i64::MAX],
        |row| row.i64(0),
    )
}
