//! The PostgreSQL backend: the shared SQL code (`super::sql`) on the synchronous `postgres` client, used from the
//! writer's thread and tokio's blocking pool like SQLite's connections, so the two backends share one writer
//! with group commit and one set of statements.
//!
//! Several nodes write to one database. What orders their writes is PostgreSQL's: a write group first takes a
//! transaction-scoped advisory lock for each app it writes to, in one global order (so groups never deadlock), and
//! holds them to its commit. An app's writes therefore commit one group at a time, which makes the rules checked
//! inside the transaction (is the sender a participant? is this idempotency key known?) hold across nodes, and
//! makes log positions, taken from a sequence under that lock, follow the app's commit order. Sequence numbers
//! come from the conversation's counter row, inside the same transaction.

use std::{cell::RefCell, collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use postgres::{
    types::{to_sql_checked, IsNull, ToSql, Type},
    Client, NoTls, Statement,
};

use super::{
    sql::{store::SqlStore, Db, Row, Value},
    StoreConfig, StoreError, StoreHooks, StoreResult,
};
use crate::domain::ids::AppId;

/// Versioned migrations, applied in order; `natter_schema.version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_apps.sql"),
    include_str!("migrations/postgres/0003_streams_and_webhooks.sql"),
    include_str!("migrations/postgres/0004_unread_counters.sql"),
];

/// Reader connections per node; more concurrent reads wait for one to come back.
const MAX_READERS: usize = 8;
/// How long opening a connection may take before the database counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The advisory lock key that serialises migrations of nodes starting together.
const MIGRATION_LOCK: i64 = 0x6e61_7474_6572; // "natter"
/// Prepared statements kept per connection; dynamic listings make more, and the cache starts over past this.
const MAX_STATEMENTS: usize = 256;

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        StoreError::Unavailable(match error.as_db_error() {
            Some(db) => format!("postgres: {}: {}", db.code().code(), db.message()),
            None => format!("postgres: {error}"),
        })
    }
}

fn connect_config(url: &str) -> StoreResult<postgres::Config> {
    let mut pg_config = postgres::Config::from_str(url)
        .map_err(|error| StoreError::Unavailable(format!("invalid database URL: {error}")))?;
    pg_config.connect_timeout(CONNECT_TIMEOUT).application_name("natter");
    Ok(pg_config)
}

/// Connects to `url`, runs pending migrations, and starts the store.
pub fn open(url: &str, config: &StoreConfig, hooks: StoreHooks) -> StoreResult<SqlStore> {
    let pg_config = connect_config(url)?;
    let mut client = pg_config.connect(NoTls)?;
    migrate(&mut client)?;
    let connect = Arc::new(move || Ok(Box::new(PgDb::new(pg_config.connect(NoTls)?)) as Box<dyn Db>));
    SqlStore::start(Box::new(PgDb::new(client)), connect, MAX_READERS, hooks, config.retention)
}

fn migrate(client: &mut Client) -> StoreResult<()> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute("CREATE TABLE IF NOT EXISTS natter_schema (version BIGINT NOT NULL)")?;
    let applied: Option<i64> = transaction.query_opt("SELECT version FROM natter_schema", &[])?.map(|row| row.get(0));
    if applied.is_none() {
        transaction.execute("INSERT INTO natter_schema (version) VALUES (0)", &[])?;
    }
    let applied = applied.unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        transaction.batch_execute(migration)?;
        transaction.execute("UPDATE natter_schema SET version = $1", &[&(index as i64 + 1)])?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    transaction.commit()?;
    Ok(())
}

/// The apps the database holds, `(id, secret)`; when it holds none, first the app `create` makes (if given). Says
/// whether it was just created. Nodes starting together agree: the first to take the lock creates, the others
/// read it.
pub fn load_or_create_apps(
    url: &str,
    create: Option<super::CreateApp>,
    now: crate::domain::Millis,
) -> StoreResult<(Vec<(String, String)>, bool)> {
    let mut client = Closing(Some(connect_config(url)?.connect(NoTls)?));
    migrate(&mut client)?;
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let read = |transaction: &mut postgres::Transaction<'_>| -> StoreResult<Vec<(String, String)>> {
        let rows = transaction.query("SELECT id, secret FROM apps ORDER BY id", &[])?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    };
    let apps = read(&mut transaction)?;
    let Some(create) = create.filter(|_| apps.is_empty()) else { return Ok((apps, false)) };
    let (id, secret) = create();
    transaction.execute("INSERT INTO apps (id, secret, created_at) VALUES ($1, $2, $3)", &[&id, &secret, &now])?;
    let apps = read(&mut transaction)?;
    transaction.commit()?;
    Ok((apps, true))
}

/// The advisory lock key of an app: FNV-1a of its id, the same on every node.
fn app_lock_key(app: &AppId) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in app.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// `?1` placeholders, as the shared statements write them, in PostgreSQL's spelling (`$1`).
fn translate(sql: &str) -> String {
    sql.replace('?', "$")
}

struct PgDb {
    client: RefCell<Closing>,
    statements: RefCell<HashMap<String, Statement>>,
}

/// A client that may be dropped anywhere. Closing one blocks on the client's own runtime, which tokio forbids on
/// a thread that drives async tasks (where a store, and its idle readers, may be dropped): there it closes on a
/// thread of its own.
struct Closing(Option<Client>);

impl std::ops::Deref for Closing {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Closing {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new().name("natter-pg-close".into()).spawn(move || drop(client));
            }
        }
    }
}

impl PgDb {
    fn new(client: Client) -> Self {
        Self { client: RefCell::new(Closing(Some(client))), statements: RefCell::new(HashMap::new()) }
    }

    fn prepare(&self, sql: &str) -> StoreResult<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.borrow_mut().prepare(&translate(sql))?;
        let mut statements = self.statements.borrow_mut();
        if statements.len() >= MAX_STATEMENTS {
            statements.clear();
        }
        statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn params<'a>(args: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|value| value as &(dyn ToSql + Sync)).collect()
}

impl Db for PgDb {
    fn execute(&self, sql: &str, args: &[Value<'_>]) -> StoreResult<u64> {
        let statement = self.prepare(sql)?;
        Ok(self.client.borrow_mut().execute(&statement, &params(args))?)
    }

    fn query(
        &self,
        sql: &str,
        args: &[Value<'_>],
        each: &mut dyn FnMut(&dyn Row) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let statement = self.prepare(sql)?;
        let rows = self.client.borrow_mut().query(&statement, &params(args))?;
        for row in &rows {
            each(&PgRow(row))?;
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> StoreResult<()> {
        Ok(self.client.borrow_mut().batch_execute(sql)?)
    }

    fn begin_write(&self, apps: &[&AppId]) -> StoreResult<()> {
        self.batch("BEGIN")?;
        let mut keys: Vec<i64> = apps.iter().map(|app| app_lock_key(app)).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            self.execute("SELECT pg_advisory_xact_lock(?1)", &[Value::Int(key)])?;
        }
        Ok(())
    }

    fn begin_snapshot(&self) -> StoreResult<()> {
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    fn is_broken(&self) -> bool {
        self.client.borrow().is_closed()
    }
}

impl ToSql for Value<'_> {
    /// Converts to the type the statement's parameter has, so that the shared statements need no casts.
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(value) => int_to_sql(*value, ty, out),
            Value::Bool(value) if *ty == Type::BOOL => value.to_sql(ty, out),
            Value::Bool(value) => int_to_sql(i64::from(*value), ty, out),
            Value::Real(value) if *ty == Type::FLOAT4 => (*value as f32).to_sql(ty, out),
            Value::Real(value) => value.to_sql(ty, out),
            Value::Text(value) => value.to_sql(ty, out),
            Value::Owned(value) => value.as_str().to_sql(ty, out),
            Value::Blob(value) => value.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn int_to_sql(
    value: i64,
    ty: &Type,
    out: &mut bytes::BytesMut,
) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    match *ty {
        Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
        Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
        Type::FLOAT8 => (value as f64).to_sql(ty, out),
        Type::BOOL => (value != 0).to_sql(ty, out),
        _ => value.to_sql(ty, out),
    }
}

struct PgRow<'a>(&'a postgres::Row);

impl PgRow<'_> {
    fn column_type(&self, index: usize) -> StoreResult<&Type> {
        self.0
            .columns()
            .get(index)
            .map(|column| column.type_())
            .ok_or_else(|| StoreError::Unavailable(format!("no column {index}")))
    }
}

impl Row for PgRow<'_> {
    fn opt_i64(&self, index: usize) -> StoreResult<Option<i64>> {
        Ok(match *self.column_type(index)? {
            Type::INT4 => self.0.try_get::<_, Option<i32>>(index)?.map(i64::from),
            Type::INT2 => self.0.try_get::<_, Option<i16>>(index)?.map(i64::from),
            Type::BOOL => self.0.try_get::<_, Option<bool>>(index)?.map(i64::from),
            _ => self.0.try_get(index)?,
        })
    }

    fn opt_f64(&self, index: usize) -> StoreResult<Option<f64>> {
        Ok(match *self.column_type(index)? {
            Type::FLOAT4 => self.0.try_get::<_, Option<f32>>(index)?.map(f64::from),
            _ => self.0.try_get(index)?,
        })
    }

    fn opt_bool(&self, index: usize) -> StoreResult<Option<bool>> {
        Ok(match *self.column_type(index)? {
            Type::BOOL => self.0.try_get(index)?,
            _ => self.opt_i64(index)?.map(|value| value != 0),
        })
    }

    fn opt_string(&self, index: usize) -> StoreResult<Option<String>> {
        Ok(self.0.try_get(index)?)
    }

    fn opt_bytes(&self, index: usize) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.0.try_get(index)?)
    }
}
