//! PostgreSQL: the connection pool, database creation and the embedded migrations.
//!
//! The migrations are the SQL files of the top-level `migrations/` folder, compiled in with
//! refinery. They run under a session advisory lock, so replicas that start together apply
//! them once; running them again is a no-op.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::{Client, Config, NoTls};
use tracing::{info, warn};

use crate::Error;
use crate::channels::Channel;
use crate::config::PoolArgs;
use crate::database_url::DatabaseUrl;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary but fixed: the advisory lock key that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6361_7274_666c_6f77; // "cartflow"

/// A pool of connections to `url`, checked with one connection now so that a missing server
/// is reported at start-up with instructions, not at the first write.
pub async fn pool(url: &DatabaseUrl, size: PoolArgs) -> Result<Pool, Error> {
    pool_with(url, size, url.config().clone()).await
}

/// A pool whose sessions run without JIT compilation, set once per connection at start-up:
/// for small, frequent statements over small tables, where the planner's estimates can be far
/// off and a JIT-compiled plan costs tens of ms that the query itself does not. (It replaces
/// any `options` the URL gives.)
pub async fn pool_without_jit(url: &DatabaseUrl, size: PoolArgs) -> Result<Pool, Error> {
    let mut config = url.config().clone();
    config.options("-c jit=off");
    pool_with(url, size, config).await
}

async fn pool_with(url: &DatabaseUrl, size: PoolArgs, config: Config) -> Result<Pool, Error> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(usize::from(size.database_pool_size))
        .build()
        .map_err(|e| Error::DatabaseUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let probe = pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => Error::database_connect(url, e),
        e => Error::DatabaseUnreachable {
            url: url.to_string(),
            source: Box::new(e),
        },
    })?;
    drop(probe);
    Ok(pool)
}

/// One connection, driven on a background task.
pub async fn connect(url: &DatabaseUrl) -> Result<Client, Error> {
    let (client, connection) = open(url.config(), url).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "PostgreSQL connection closed.");
        }
    });
    Ok(client)
}

/// Creates the database named in `url` if it does not exist yet. Returns whether it did.
pub async fn ensure_database(url: &DatabaseUrl) -> Result<bool, Error> {
    let name = url.dbname().to_owned();
    let admin = url.with_dbname("postgres");
    let (client, connection) = open(admin.config(), url).await?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    // Text compared byte by byte ("C"), not by the cluster's locale: the carts' primary key
    // over 3.2 million keys builds in 1.9 s instead of 4.3 s under C.UTF-8, where PostgreSQL
    // calls strcoll for every comparison. C.UTF-8 orders by code point, which is byte order
    // for UTF-8 text, so no order a reader sees changes (docs/architecture.md).
    match client
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0 LC_COLLATE 'C'",
            quote_ident(&name)
        ))
        .await
    {
        Ok(()) => {
            info!(database = %name, "Created the database.");
            Ok(true)
        }
        // Another process created it between the check and the CREATE.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops the database named in `url`, closing its connections first. Returns whether it
/// existed.
pub async fn drop_database(url: &DatabaseUrl) -> Result<bool, Error> {
    let name = url.dbname().to_owned();
    let admin = url.with_dbname("postgres");
    let (client, connection) = open(admin.config(), url).await?;
    tokio::spawn(connection);
    let existed = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        ))
        .await?;
    Ok(existed)
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations applied by this run, as `V1__raw_log`.
    pub applied: Vec<String>,
    /// The schema version after the run.
    pub version: Option<i32>,
}

/// Applies the embedded migrations that the database does not have yet.
pub async fn migrate(url: &DatabaseUrl) -> Result<Migrated, Error> {
    let mut client = connect(url).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut client)
        .await;
    // The lock is per session; dropping the client would free it too.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result?;
    let applied: Vec<String> = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    let version = embedded::migrations::runner()
        .get_last_applied_migration_async(&mut client)
        .await?
        .map(|m| m.version());
    for name in &applied {
        info!(migration = %name, "Applied migration.");
    }
    Ok(Migrated { applied, version })
}

/// What a service does with the schema at start: create the database and apply the
/// migrations, or, told to skip them, only [`check_migrated`].
pub async fn prepare_schema(url: &DatabaseUrl, skip_migrations: bool) -> Result<(), Error> {
    if skip_migrations {
        return check_migrated(url).await;
    }
    ensure_database(url).await?;
    migrate(url).await?;
    Ok(())
}

/// The newest migration this build embeds.
pub fn newest_migration() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Checks, without changing anything, that the database has every migration this build
/// embeds: what a service started with `--skip-migrations` needs before its first statement.
/// Without it, a database left behind by an older version failed later with PostgreSQL's
/// "function does not exist" in the middle of the work. A database ahead of this build
/// (migrated by a newer version) passes: migrations only add.
pub async fn check_migrated(url: &DatabaseUrl) -> Result<(), Error> {
    let client = connect(url).await?;
    let history: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    let have: Option<i32> = if history {
        client
            .query_one("SELECT max(version) FROM refinery_schema_history", &[])
            .await?
            .get(0)
    } else {
        None
    };
    let need = newest_migration();
    if have.is_some_and(|v| v >= need) {
        return Ok(());
    }
    Err(Error::NotMigrated {
        url: url.to_string(),
        have: have.map_or_else(|| "none".to_owned(), |v| format!("up to V{v}")),
        need,
    })
}

/// A connection that LISTENs on `channel`, and its notifications' payloads: `None` for one
/// this version cannot read, still a wake-up. The receiver closes when the connection does.
pub async fn listen<T: DeserializeOwned + Send + 'static>(
    url: &DatabaseUrl,
    channel: Channel<T>,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<Option<T>>), Error> {
    let (client, mut connection) = open(url.config(), url).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures::StreamExt::next(&mut messages).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(channel.read(n.payload())).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "LISTEN connection closed.");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", quote_ident(channel.name())))
        .await?;
    Ok((client, rx))
}

/// The statement [`notify`] runs: `$1` the channel's name, `$2` the payload.
pub const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

/// Sends `message` on `channel`, delivered when `client`'s transaction commits. `statement`
/// is [`NOTIFY_SQL`] itself, or that text prepared once on this connection: text is prepared
/// again on every call, one round trip more, which hot paths (a consumer's batch, a
/// projector's step) do not pay.
pub async fn notify<T: Serialize, S>(
    client: &impl tokio_postgres::GenericClient,
    statement: &S,
    channel: Channel<T>,
    message: &T,
) -> Result<(), Error>
where
    S: ?Sized + tokio_postgres::ToStatement + Sync + Send,
{
    client
        .execute(statement, &[&channel.name(), &channel.payload(message)])
        .await?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects with `config`; `url` only names the server in the error.
async fn open(
    config: &Config,
    url: &DatabaseUrl,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    Error,
> {
    config
        .connect(NoTls)
        .await
        .map_err(|e| Error::database_connect(url, e))
}
