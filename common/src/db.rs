//! PostgreSQL: the connection pool, database creation and the embedded migrations.
//!
//! The migrations are the SQL files of the top-level `migrations/` folder, compiled in with
//! refinery. They run under a session advisory lock, so replicas that start together apply
//! them once; running them again is a no-op.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Client, Config, NoTls};
use tracing::{info, warn};

use crate::Error;
use crate::config::{DatabaseArgs, PoolArgs};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

pub use crate::channels::EVENTS_CHANNEL;

/// Arbitrary but fixed: the advisory lock key that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6361_7274_666c_6f77; // "cartflow"

/// A pool of connections to `args.database_url`, checked with one connection now so that a
/// missing server is reported at start-up with instructions, not at the first write.
pub async fn pool(args: &DatabaseArgs, size: PoolArgs) -> Result<Pool, Error> {
    pool_with(args, size, parse(&args.database_url)?).await
}

/// A pool whose sessions run without JIT compilation, set once per connection at start-up:
/// for small, frequent statements over small tables, where the planner's estimates can be far
/// off and a JIT-compiled plan costs tens of ms that the query itself does not. (It replaces
/// any `options` the URL gives.)
pub async fn pool_without_jit(args: &DatabaseArgs, size: PoolArgs) -> Result<Pool, Error> {
    let mut config = parse(&args.database_url)?;
    config.options("-c jit=off");
    pool_with(args, size, config).await
}

async fn pool_with(args: &DatabaseArgs, size: PoolArgs, config: Config) -> Result<Pool, Error> {
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
            url: redact(&args.database_url),
            reason: e.to_string(),
        })?;
    let probe = pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => Error::database_connect(&args.database_url, &e),
        e => Error::DatabaseUnreachable {
            url: redact(&args.database_url),
            reason: e.to_string(),
        },
    })?;
    drop(probe);
    Ok(pool)
}

/// One connection, driven on a background task.
pub async fn connect(url: &str) -> Result<Client, Error> {
    let (client, connection) = open(&parse(url)?, url).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "PostgreSQL connection closed.");
        }
    });
    Ok(client)
}

/// Creates the database named in `url` if it does not exist yet. Returns whether it did.
pub async fn ensure_database(url: &str) -> Result<bool, Error> {
    let config = parse(url)?;
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = open(&admin, url).await?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    match client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
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
pub async fn drop_database(url: &str) -> Result<bool, Error> {
    let config = parse(url)?;
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = open(&admin, url).await?;
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

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let root = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
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
pub async fn migrate(url: &str) -> Result<Migrated, Error> {
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

/// A connection that LISTENs on `channel`, and the payloads of its notifications. The
/// receiver closes when the connection does.
pub async fn listen(
    url: &str,
    channel: &str,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), Error> {
    let (client, mut connection) = open(&parse(url)?, url).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures::StreamExt::next(&mut messages).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
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
        .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
        .await?;
    Ok((client, rx))
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects with `config`; `url` only names the server in the error.
async fn open(
    config: &Config,
    url: &str,
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
        .map_err(|e| Error::database_connect(url, &e))
}

fn parse(url: &str) -> Result<Config, Error> {
    url.parse::<Config>().map_err(|e| Error::DatabaseUrl {
        url: redact(url),
        reason: e.to_string(),
    })
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, with_database};

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/cartflow", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/cartflow"),
            "postgres://app:***@db:5432/cartflow"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/cartflow"),
            "postgres://postgres@127.0.0.1/cartflow"
        );
    }
}
