//! The embedded SQLite backend: WAL, `synchronous=FULL`, the shared SQL code (`super::sql`) on rusqlite. Its
//! writer serialises every write of the node anyway, so a write transaction is `BEGIN IMMEDIATE`; a maintenance
//! thread checkpoints the WAL so the writer never copies much of it back while callers wait.

use std::{path::Path, sync::Arc, time::Duration};

use rusqlite::{
    types::{ToSqlOutput, ValueRef},
    Connection, OpenFlags, ToSql,
};

mod statements;
mod wal_writes;

use statements::CachedConnection;

use super::{
    sql::{args, store::SqlStore, writer::WeakWriter, Db, Row, Value},
    StoreConfig, StoreError, StoreHooks, StoreResult,
};
use crate::domain::ids::AppId;

/// Versioned migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_message_links.sql"),
    include_str!("migrations/sqlite/0003_event_log.sql"),
    include_str!("migrations/sqlite/0004_streams_and_webhooks.sql"),
    include_str!("migrations/sqlite/0005_unread_counters.sql"),
];

/// Reader connections kept open; more concurrent reads wait for one to come back.
const MAX_READERS: usize = 8;

const DATABASE_FILE: &str = "natter.sqlite3";

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// Opens (creating if needed) the database in `config.data_dir` and runs pending migrations.
pub fn open(config: &StoreConfig, hooks: StoreHooks) -> StoreResult<SqlStore> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|error| StoreError::Unavailable(format!("cannot create {}: {error}", config.data_dir.display())))?;
    let path = config.data_dir.join(DATABASE_FILE);
    let mut connection = open_connection(&path)?;
    migrate(&mut connection)?;
    // Checkpoints run on their own thread, so the writer never copies the WAL back while callers wait.
    connection.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
    let connect = {
        let path = path.clone();
        Arc::new(move || Ok(Box::new(SqliteDb::new(open_connection(&path)?)) as Box<dyn Db>))
    };
    let store = SqlStore::start(Box::new(SqliteDb::new(connection)), connect, MAX_READERS, hooks, config.retention)?;
    spawn_checkpoints(open_connection(&path)?, store.weak_writer())?;
    Ok(store)
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // The WAL's writes reach the kernel in one piece per commit (wal_writes); without it, SQLite's own VFS.
    let connection = if wal_writes::register() {
        Connection::open_with_flags_and_vfs(path, flags, wal_writes::VFS_NAME)?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    connection.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, so an acknowledged write
    // survives power loss, not only a crash of the process.
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384; PRAGMA journal_size_limit = 67108864;",
    )?;
    // wal_writes writes what it gathered when the WAL is synced, which FULL does at every commit before the
    // commit is published to other connections.
    let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    if synchronous != 2 {
        return Err(StoreError::Unavailable(format!("SQLite kept synchronous = {synchronous}, not FULL")));
    }
    // Without the query planner stability guarantee SQLite peeks at a bound `LIMIT ?` (and, with STAT4, at
    // bound range values) while planning, and then re-prepares the statement on every later bind of that
    // parameter: a cached statement would be parsed again on each call. Plans here never depend on values.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(connection)
}

/// How often the maintenance thread copies committed WAL frames back into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// WAL frames (pages) past which the writer is asked to finish a checkpoint itself.
const RESTART_AFTER_FRAMES: i64 = 256;

/// Runs PASSIVE checkpoints (they never block the writer) until the store is dropped.
///
/// SQLite starts the WAL over only when a write transaction begins with every frame already copied back. Under a
/// steady stream of commits that never happens from another connection: by the time its checkpoint ends, the
/// writer has appended more. The WAL would then grow without bound (tens of MB a second at a few thousand
/// messages a second), and each commit would extend the file, so its `fdatasync` writes file metadata too. So
/// once this thread has copied the bulk, it asks the writer to copy the last few frames between two groups; the
/// writer's next commit then writes from the WAL's start again, over blocks the file already has, and
/// `journal_size_limit` trims a file a burst left large.
fn spawn_checkpoints(connection: Connection, writer: WeakWriter) -> StoreResult<()> {
    std::thread::Builder::new()
        .name("natter-sqlite-checkpoints".into())
        .spawn(move || {
            while writer.is_alive() {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                match checkpoint(&connection) {
                    Ok(frames) if frames >= RESTART_AFTER_FRAMES => {
                        writer.request_upkeep(Box::new(finish_checkpoint));
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(cause = %error, "checkpoint failed"),
                }
            }
        })
        .map_err(|error| StoreError::Unavailable(format!("cannot start checkpoints: {error}")))?;
    Ok(())
}

/// A PASSIVE checkpoint; returns how many frames the WAL holds.
fn checkpoint(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

/// Run by the writer between groups: copies back what the maintenance thread could not yet.
fn finish_checkpoint(db: &dyn Db) {
    if let Err(error) = db.one("PRAGMA wal_checkpoint(PASSIVE)", args![], |row| row.i64(1)) {
        tracing::warn!(cause = %error, "checkpoint on the write connection failed");
    }
}

fn migrate(connection: &mut Connection) -> StoreResult<()> {
    let applied: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}

struct SqliteDb(CachedConnection);

impl SqliteDb {
    fn new(connection: Connection) -> Self {
        Self(CachedConnection::wrap(connection))
    }
}

impl Db for SqliteDb {
    fn execute(&self, sql: &str, args: &[Value<'_>]) -> StoreResult<u64> {
        self.0.with_statement(sql, |statement| Ok(statement.execute(rusqlite::params_from_iter(args))? as u64))
    }

    fn query(
        &self,
        sql: &str,
        args: &[Value<'_>],
        each: &mut dyn FnMut(&dyn Row) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.0.with_statement(sql, |statement| {
            let mut rows = statement.query(rusqlite::params_from_iter(args))?;
            while let Some(row) = rows.next()? {
                each(&SqliteRow(row))?;
            }
            Ok(())
        })
    }

    /// Prepared once and cached: transaction control runs several times per commit.
    fn batch(&self, sql: &str) -> StoreResult<()> {
        self.0.with_statement(sql, |statement| {
            statement.execute([])?;
            Ok(())
        })
    }

    /// Without RETURNING, which would gather the row in a temporary b-tree (opened, paged and closed per call).
    fn write_returning(
        &self,
        write: &str,
        _columns: &str,
        read_back: &str,
        args: &[Value<'_>],
        each: &mut dyn FnMut(&dyn Row) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.execute(write, args)?;
        self.query(read_back, args, each)
    }

    /// The rowid the connection's last INSERT gave, which is `key` (an INTEGER PRIMARY KEY) for such a table.
    fn insert_returning_key(&self, insert: &str, _key: &str, args: &[Value<'_>]) -> StoreResult<i64> {
        if self.execute(insert, args)? != 1 {
            return Err(StoreError::Unavailable(format!("{insert} inserted no row")));
        }
        Ok(self.0.connection().last_insert_rowid())
    }

    /// Counts every row an INSERT, UPDATE or DELETE changed, upserts included; a statement SQLite backed out (a
    /// constraint it broke) counts none. The schema has no triggers or cascades, which would write uncounted.
    fn rows_written(&self) -> Option<u64> {
        Some(self.0.connection().total_changes())
    }

    /// The writer is the only one writing, so no app needs a lock of its own; `IMMEDIATE` takes the write lock
    /// now rather than at the first write.
    fn begin_write(&self, _apps: &[&AppId]) -> StoreResult<()> {
        self.batch("BEGIN IMMEDIATE")
    }

    /// A deferred transaction sees one snapshot from its first read on (WAL).
    fn begin_snapshot(&self) -> StoreResult<()> {
        self.batch("BEGIN")
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(value) => ValueRef::Integer(*value),
            Value::Real(value) => ValueRef::Real(*value),
            Value::Bool(value) => ValueRef::Integer(i64::from(*value)),
            Value::Text(value) => ValueRef::Text(value.as_bytes()),
            Value::Owned(value) => ValueRef::Text(value.as_bytes()),
            Value::Blob(value) => ValueRef::Blob(value),
        }))
    }
}

struct SqliteRow<'a, 'stmt>(&'a rusqlite::Row<'stmt>);

impl Row for SqliteRow<'_, '_> {
    fn opt_i64(&self, index: usize) -> StoreResult<Option<i64>> {
        Ok(self.0.get(index)?)
    }

    fn opt_f64(&self, index: usize) -> StoreResult<Option<f64>> {
        Ok(self.0.get(index)?)
    }

    fn opt_bool(&self, index: usize) -> StoreResult<Option<bool>> {
        Ok(self.0.get(index)?)
    }

    fn opt_string(&self, index: usize) -> StoreResult<Option<String>> {
        Ok(self.0.get(index)?)
    }

    fn opt_bytes(&self, index: usize) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.0.get(index)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use rusqlite::StatementStatus;

    use super::{open_connection, CachedConnection, SqliteDb};
    use crate::domain::{
        event::UserEvent,
        ids::{AppId, ConversationId},
        Rejection,
    };
    use crate::store::{
        log::Retention,
        sql::{args, writer::Writer, Db},
        StoreError, StoreHooks, StoreResult,
    };

    fn insert(db: &dyn Db, key: &str) -> StoreResult<Option<UserEvent>> {
        db.execute("INSERT INTO t (k) VALUES (?1)", args![key])?;
        Ok(None)
    }

    /// How a group of three jobs ended, `b` between two inserts: how often the first ran, what `b` was answered,
    /// and the keys that were committed.
    async fn group_around<F>(b: F) -> (usize, StoreResult<Option<UserEvent>>, Vec<String>)
    where
        F: FnMut(&dyn Db) -> StoreResult<Option<UserEvent>> + Send + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        let connection = open_connection(&path).unwrap();
        connection.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)").unwrap();
        let reconnect = Box::new(|| Err(StoreError::Unavailable("no reconnect in this test".into())));
        let writer =
            Writer::spawn(Box::new(SqliteDb::new(connection)), reconnect, StoreHooks::default(), Retention::default())
                .unwrap();
        let app = AppId::from_trusted("app".into());

        // A first group holds the writer until the three jobs below are queued, so that they make one group.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let (writer, app) = (writer.clone(), app.clone());
            async move {
                writer
                    .write(app, move |_| {
                        let _ = started_tx.send(());
                        let _ = release_rx.recv();
                        Ok(None::<UserEvent>)
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();

        let runs_of_a = Arc::new(AtomicUsize::new(0));
        let a = writer.write(app.clone(), {
            let runs_of_a = runs_of_a.clone();
            move |db| {
                runs_of_a.fetch_add(1, Ordering::SeqCst);
                insert(db, "a")
            }
        });
        let b = writer.write(app.clone(), b);
        let c = writer.write(app.clone(), |db| insert(db, "c"));
        let release = async move {
            // a, b and c are polled first and are queued by now: their sends do not wait (the queue has room).
            tokio::task::yield_now().await;
            release_tx.send(()).unwrap();
        };
        let (a, b, c, ()) = tokio::join!(a, b, c, release);
        holder.await.unwrap().unwrap();
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");

        let reader = open_connection(&path).unwrap();
        let mut statement = reader.prepare("SELECT k FROM t ORDER BY k").unwrap();
        let keys: Vec<String> = statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
        (runs_of_a.load(Ordering::SeqCst), b, keys)
    }

    fn rejected() -> StoreError {
        StoreError::Rejected(Rejection::ConversationNotFound(ConversationId::from_trusted("gone".into())))
    }

    /// Jobs of one group run without savepoints first; one that fails after writing sends the group back to run
    /// again with a savepoint per job, so that it alone is undone and the others stand.
    #[tokio::test]
    async fn a_job_that_fails_after_writing_is_undone_alone_and_the_rest_of_its_group_commits() {
        let (runs_of_a, b, keys) = group_around(|db| {
            insert(db, "b")?;
            Err(StoreError::Unavailable("failed after writing".into()))
        })
        .await;
        assert!(matches!(&b, Err(StoreError::Unavailable(cause)) if cause.contains("after writing")), "{b:?}");
        assert_eq!(runs_of_a, 2, "the group was started over once");
        assert_eq!(keys, ["a", "c"]);

        let (runs_of_a, b, keys) = group_around(|db| {
            insert(db, "b")?;
            Err(rejected())
        })
        .await;
        assert!(matches!(&b, Err(StoreError::Rejected(_))), "{b:?}");
        assert_eq!(runs_of_a, 2, "a rejection after a write starts the group over too");
        assert_eq!(keys, ["a", "c"]);
    }

    /// A job rejected before it wrote anything has nothing to undo: the group goes on without starting over.
    #[tokio::test]
    async fn a_job_rejected_before_writing_leaves_the_rest_of_its_group_running_once() {
        let (runs_of_a, b, keys) = group_around(|db| {
            let _ = db.execute("UPDATE t SET k = 'x' WHERE k = 'nothing'", args![])?;
            Err(rejected())
        })
        .await;
        assert!(matches!(&b, Err(StoreError::Rejected(_))), "{b:?}");
        assert_eq!(runs_of_a, 1, "the group ran once");
        assert_eq!(keys, ["a", "c"]);
    }

    /// A cached statement with a bound `LIMIT` and a bound range must run again without being parsed again,
    /// whatever values it is given: the shape of every windowed read here.
    #[test]
    fn a_cached_statement_with_a_bound_limit_is_not_prepared_again() {
        let dir = tempfile::tempdir().unwrap();
        let connection = open_connection(&dir.path().join("natter.db")).unwrap();
        connection
            .execute_batch("CREATE TABLE t (k TEXT, seq INTEGER, PRIMARY KEY (k, seq)); INSERT INTO t VALUES ('a', 1), ('a', 2), ('a', 3);")
            .unwrap();
        let sql = "SELECT seq FROM t WHERE k = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
        // Through the cache the store's connections use.
        let cached = CachedConnection::wrap(connection);
        for (before, limit) in [(10, 1), (3, 30), (2, 1), (10, 2)] {
            let (rows, re_prepared) = cached
                .with_statement(sql, |statement| {
                    let rows: Vec<i64> = statement
                        .query_map(rusqlite::params!["a", before, limit], |row| row.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    Ok::<_, rusqlite::Error>((rows, statement.get_status(StatementStatus::RePrepare)))
                })
                .unwrap();
            assert_eq!(rows.len(), limit.min(before - 1).min(3) as usize);
            assert_eq!(re_prepared, 0, "re-prepared with before {before}, limit {limit}");
        }
    }
}
