//! A connection with the statements prepared on it, found again by their SQL text.
//!
//! rusqlite's own cache (`prepare_cached`) hashes the text twice with SipHash on every use, allocates an `Arc<str>`
//! for its key and relinks a node of its LRU list: about 4% of a message's instructions on the write path, where a
//! message runs some ten statements. Here a statement is taken out of a map keyed by its text (a fast hash of
//! it), used, and put back under the key it had, so a statement used again allocates nothing. Taken out while in
//! use, a statement cannot be reached twice: a nested use of the same text prepares one of its own.

use std::{cell::RefCell, collections::HashMap};

use rusqlite::{Connection, PrepFlags, Statement};

/// Distinct statements kept at most; past it the map starts over. The SQL of the store is a fixed set of texts
/// (some hundred), so this only bounds what a bug could make of it.
const MAX_STATEMENTS: usize = 512;

type Statements<'conn> = RefCell<HashMap<Box<str>, Statement<'conn>, foldhash::fast::FixedState>>;

self_cell::self_cell!(
    /// The statements borrow the connection they were prepared on, and are finalized before it closes.
    pub struct CachedConnection {
        owner: Connection,
        #[not_covariant]
        dependent: Statements,
    }
);

// SAFETY: a `Statement` is not `Send` only because it points into the connection it was prepared on (which is
// not `Sync`). Here the statements move only together with that connection, inside the same value, which is not
// `Sync` either (`RefCell`): connection and statements are used from one thread at a time, as SQLite requires of a
// connection opened without its mutex, and as rusqlite itself assumes when it sends a `Connection` with the
// statements of its own cache.
#[allow(unsafe_code)]
unsafe impl Send for CachedConnection {}

impl CachedConnection {
    pub fn wrap(connection: Connection) -> Self {
        Self::new(connection, |_| RefCell::new(HashMap::default()))
    }

    pub fn connection(&self) -> &Connection {
        self.borrow_owner()
    }

    /// Runs `work` on the statement of `sql`, prepared on its first use. rusqlite resets a statement when an
    /// execution or its rows end; the values bound last stay bound until the next use binds its own.
    pub fn with_statement<T, E>(&self, sql: &str, work: impl FnOnce(&mut Statement<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        self.with_dependent(|connection, statements| {
            let taken = statements.borrow_mut().remove_entry(sql);
            let (key, mut statement) = match taken {
                Some(entry) => entry,
                None => (Box::from(sql), connection.prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT)?),
            };
            let result = work(&mut statement);
            let mut statements = statements.borrow_mut();
            if statements.len() >= MAX_STATEMENTS {
                statements.clear();
            }
            statements.insert(key, statement);
            result
        })
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.with_dependent(|_, statements| statements.borrow().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> CachedConnection {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        CachedConnection::wrap(connection)
    }

    fn count(db: &CachedConnection) -> i64 {
        db.with_statement("SELECT COUNT(*) FROM t", |statement| statement.query_row([], |row| row.get(0))).unwrap()
    }

    #[test]
    fn a_statement_is_prepared_once_and_reused() {
        let db = database();
        for k in 0..10 {
            let inserted: rusqlite::Result<usize> = db
                .with_statement("INSERT INTO t (k, v) VALUES (?1, ?2)", |statement| {
                    statement.execute(rusqlite::params![k, format!("value {k}")])
                });
            assert_eq!(inserted.unwrap(), 1);
        }
        assert_eq!(count(&db), 10);
        assert_eq!(db.kept(), 2);
        // The same text was prepared once: its statement has run ten times.
        let runs = db.with_statement("INSERT INTO t (k, v) VALUES (?1, ?2)", |statement| {
            Ok::<_, rusqlite::Error>(statement.get_status(rusqlite::StatementStatus::Run))
        });
        assert_eq!(runs.unwrap(), 10);
    }

    #[test]
    fn rows_left_unread_and_errors_leave_a_statement_reusable() {
        let db = database();
        db.connection().execute_batch("INSERT INTO t (k, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')").unwrap();
        let first: rusqlite::Result<String> = db.with_statement("SELECT v FROM t ORDER BY k", |statement| {
            let mut rows = statement.query([])?;
            rows.next()?.expect("a row").get(0)
        });
        assert_eq!(first.unwrap(), "a");
        let all: rusqlite::Result<Vec<String>> = db.with_statement("SELECT v FROM t ORDER BY k", |statement| {
            statement.query_map([], |row| row.get(0))?.collect()
        });
        assert_eq!(all.unwrap(), ["a", "b", "c"]);
        let duplicate: rusqlite::Result<usize> =
            db.with_statement("INSERT INTO t (k, v) VALUES (?1, 'x')", |statement| statement.execute([1]));
        assert!(duplicate.is_err());
        let fresh: rusqlite::Result<usize> =
            db.with_statement("INSERT INTO t (k, v) VALUES (?1, 'x')", |statement| statement.execute([4]));
        assert_eq!(fresh.unwrap(), 1);
        assert_eq!(count(&db), 4);
    }

    #[test]
    fn a_nested_use_of_the_same_text_prepares_its_own() {
        let db = database();
        db.connection().execute_batch("INSERT INTO t (k, v) VALUES (1, 'a'), (2, 'b')").unwrap();
        let sql = "SELECT v FROM t WHERE k = ?1";
        let pair: rusqlite::Result<(String, String)> = db.with_statement(sql, |outer| {
            let a: String = outer.query_row([1], |row| row.get(0))?;
            let b = db.with_statement(sql, |inner| inner.query_row([2], |row| row.get::<_, String>(0)))?;
            Ok((a, b))
        });
        assert_eq!(pair.unwrap(), ("a".to_owned(), "b".to_owned()));
        assert_eq!(db.kept(), 1);
    }

    #[test]
    fn an_unpreparable_text_is_an_error_and_kept_nowhere() {
        let db = database();
        let result: rusqlite::Result<usize> = db.with_statement("SELEC nothing", |statement| statement.execute([]));
        assert!(result.is_err());
        assert_eq!(db.kept(), 0);
    }
}
