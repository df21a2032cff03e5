//! What the SQL backends share: the transactions and queries (`writes`, `reads`), the group-commit writer
//! (`writer`), the `Store` they implement together (`store`), written once against `Db`, a connection seen
//! through the few operations they need. SQLite (`super::sqlite`) and PostgreSQL (`super::postgres`) each
//! implement `Db` and say how to open, migrate and begin a write; the SQL text is the common subset of both.
//!
//! Statements use numbered parameters (`?1`); a backend that spells them otherwise translates them once, when it
//! prepares the statement. Integers are 64-bit, flags are integers (0 or 1), maps and lists are JSON text.

pub mod reads;
pub mod store;
pub mod writer;
pub mod writes;

use serde::{de::DeserializeOwned, Serialize};

use super::{StoreError, StoreResult};
use crate::domain::ids::AppId;

/// A statement parameter. Borrowed where it can be, so that binding copies nothing.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(&'a str),
    Owned(String),
    Blob(&'a [u8]),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(value)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(value)
    }
}

impl From<String> for Value<'_> {
    fn from(value: String) -> Self {
        Value::Owned(value)
    }
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<f64> for Value<'_> {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<bool> for Value<'_> {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(value: &'a [u8]) -> Self {
        Value::Blob(value)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// The parameters of a statement, in order: `args![app.as_str(), seq.0]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::Value::from($value)),*]
    };
}
pub(crate) use args;

/// One row of a result. Columns are read by index; a NULL where a value is required is an error.
pub trait Row {
    fn opt_i64(&self, index: usize) -> StoreResult<Option<i64>>;
    fn opt_f64(&self, index: usize) -> StoreResult<Option<f64>>;
    fn opt_bool(&self, index: usize) -> StoreResult<Option<bool>>;
    fn opt_string(&self, index: usize) -> StoreResult<Option<String>>;
    fn opt_bytes(&self, index: usize) -> StoreResult<Option<Vec<u8>>>;

    fn i64(&self, index: usize) -> StoreResult<i64> {
        self.opt_i64(index)?.ok_or_else(|| null_column(index))
    }

    fn bool(&self, index: usize) -> StoreResult<bool> {
        self.opt_bool(index)?.ok_or_else(|| null_column(index))
    }

    fn string(&self, index: usize) -> StoreResult<String> {
        self.opt_string(index)?.ok_or_else(|| null_column(index))
    }
}

fn null_column(index: usize) -> StoreError {
    StoreError::Unavailable(format!("column {index} is NULL where a value is stored"))
}

/// A connection, as the shared code uses it. Not `Sync`: one thread at a time.
pub trait Db: Send {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&self, sql: &str, args: &[Value<'_>]) -> StoreResult<u64>;
    /// Runs a query and calls `each` for every row, in order. `each` must not use this connection.
    fn query(
        &self,
        sql: &str,
        args: &[Value<'_>],
        each: &mut dyn FnMut(&dyn Row) -> StoreResult<()>,
    ) -> StoreResult<()>;
    /// Runs statements without parameters (transaction control, migrations).
    fn batch(&self, sql: &str) -> StoreResult<()>;
    /// Runs `write`, an INSERT or UPDATE of one row, and calls `each` with that row's `columns` as they are now:
    /// what `write RETURNING columns` gives. `read_back` is a query of the same row's `columns` over the same
    /// parameters, run right after `write` in its transaction by a backend where RETURNING costs more than a
    /// second statement does (SQLite gathers RETURNING's rows in a temporary b-tree before it yields the first).
    fn write_returning(
        &self,
        write: &str,
        columns: &str,
        read_back: &str,
        args: &[Value<'_>],
        each: &mut dyn FnMut(&dyn Row) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let _ = read_back;
        self.query(&format!("{write} RETURNING {columns}"), args, each)
    }
    /// Runs `insert`, an INSERT of one row into a table whose integer `key` the database assigns (SQLite's rowid),
    /// and returns the key it gave the row.
    fn insert_returning_key(&self, insert: &str, key: &str, args: &[Value<'_>]) -> StoreResult<i64> {
        let mut assigned = None;
        self.query(&format!("{insert} RETURNING {key}"), args, &mut |row| {
            assigned = Some(row.i64(0)?);
            Ok(())
        })?;
        assigned.ok_or_else(|| StoreError::Unavailable(format!("no {key} from {insert}")))
    }
    /// How many rows this connection has inserted, updated or deleted since it opened, where the backend keeps
    /// that count (SQLite's `total_changes`): a job after which it has not moved wrote nothing.
    fn rows_written(&self) -> Option<u64> {
        None
    }
    /// Begins the transaction of a write group that writes to `apps` (sorted, without duplicates): the backend
    /// takes what it must so that each app's writes commit one at a time, in the order of their log positions.
    fn begin_write(&self, apps: &[&AppId]) -> StoreResult<()>;
    /// Begins a read-only transaction whose statements all see one snapshot; `batch("ROLLBACK")` ends it.
    fn begin_snapshot(&self) -> StoreResult<()>;
    /// The connection is gone for good (the server closed it): open a new one rather than use this one.
    fn is_broken(&self) -> bool {
        false
    }
}

impl dyn Db + '_ {
    /// Every row, mapped.
    pub fn rows<T>(
        &self,
        sql: &str,
        args: &[Value<'_>],
        mut map: impl FnMut(&dyn Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut rows = Vec::new();
        self.query(sql, args, &mut |row| {
            rows.push(map(row)?);
            Ok(())
        })?;
        Ok(rows)
    }

    /// The first row, mapped, if there is one.
    pub fn row<T>(
        &self,
        sql: &str,
        args: &[Value<'_>],
        mut map: impl FnMut(&dyn Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let mut first = None;
        self.query(sql, args, &mut |row| {
            if first.is_none() {
                first = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// The first row of a query that always returns one (an aggregate).
    pub fn one<T>(&self, sql: &str, args: &[Value<'_>], map: impl FnMut(&dyn Row) -> StoreResult<T>) -> StoreResult<T> {
        self.row(sql, args, map)?.ok_or_else(|| StoreError::Unavailable(format!("no row from {sql}")))
    }

    /// `write_returning` of a write that always writes its row, mapped.
    pub fn one_written<T>(
        &self,
        write: &str,
        columns: &str,
        read_back: &str,
        args: &[Value<'_>],
        mut map: impl FnMut(&dyn Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut first = None;
        self.write_returning(write, columns, read_back, args, &mut |row| {
            if first.is_none() {
                first = Some(map(row)?);
            }
            Ok(())
        })?;
        first.ok_or_else(|| StoreError::Unavailable(format!("no row from {write}")))
    }
}

/// Encodes a column value that holds a map or a list.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("maps and lists of strings always encode")
}

pub fn from_json<T: DeserializeOwned>(raw: Option<&str>) -> Option<T> {
    raw.and_then(|raw| serde_json::from_str(raw).ok())
}

/// A query assembled from fragments with numbered parameters.
pub struct Sql {
    pub text: String,
    pub values: Vec<Value<'static>>,
}

impl Sql {
    pub fn new(text: String) -> Self {
        Self { text, values: Vec::new() }
    }

    pub fn push(&mut self, fragment: &str) {
        self.text.push_str(fragment);
    }

    pub fn bind(&mut self, value: impl Into<Value<'static>>) {
        self.values.push(value.into());
        self.text.push_str(&format!("?{}", self.values.len()));
    }
}

/// The wall clock in Unix milliseconds.
pub fn now_millis() -> crate::domain::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as crate::domain::Millis)
}
