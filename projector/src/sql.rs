//! Statements prepared once per connection, reused by every step.
//!
//! A step issues some twenty statements. Sent as text, tokio-postgres prepares each before it
//! runs (a round trip) and PostgreSQL parses and plans it every time: about 0.35 ms of the
//! 1.7 ms an 84-cart upsert takes (pgbench, prepared against extended). [`Db`] keeps the
//! prepared statements of its connection by their text, so a step pays for neither after
//! the first. PostgreSQL re-plans a prepared statement by itself when a table it names is
//! altered, analysed or replaced (a rebuild's schema swap), so a cached statement never
//! reads a dropped table.
//!
//! Statements are parsed once but planned at every execution (`plan_cache_mode =
//! force_custom_plan` on the connection): a generic plan made while the tables were small
//! stayed in use as they grew (seq scans of a table that had become 100,000 carts), and the
//! projector fell 80 s behind at 5,000 events/s. Planning sees the tables' current size.

use std::collections::HashMap;
use std::sync::Mutex;

use cartflow_common::channels::Channel;
use cartflow_common::db;
use tokio_postgres::types::{BorrowToSql, ToSql};
use tokio_postgres::{Client, GenericClient, Row, RowStream, Statement};

use crate::Error;

/// More distinct statements than this and the cache starts over: the projector's are a few
/// dozen, so only a bug (a value formatted into the text) would get there.
const MAX_STATEMENTS: usize = 256;

/// The statements prepared on one connection, by their text. Belongs to that connection: a
/// new connection needs a new one.
#[derive(Debug)]
pub struct Statements {
    by_text: Mutex<HashMap<String, Statement>>,
}

impl Statements {
    /// An empty set for `client`'s connection, which from now on plans every execution anew.
    pub async fn for_connection(client: &Client) -> Result<Self, Error> {
        client
            .batch_execute("SET plan_cache_mode = force_custom_plan")
            .await?;
        Ok(Statements {
            by_text: Mutex::new(HashMap::new()),
        })
    }

    fn get(&self, sql: &str) -> Option<Statement> {
        self.lock().get(sql).cloned()
    }

    fn put(&self, sql: &str, statement: &Statement) {
        let mut by_text = self.lock();
        if by_text.len() >= MAX_STATEMENTS {
            by_text.clear();
        }
        by_text.insert(sql.to_owned(), statement.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.by_text.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A client or transaction whose statements are prepared once, with [`Db::cached`], or anew
/// each time, with [`Db::new`] (one-off work such as a rebuild's bulk pass).
#[derive(Debug)]
pub struct Db<'a, C> {
    client: &'a C,
    statements: Option<&'a Statements>,
}

impl<'a, C: GenericClient + Sync> Db<'a, C> {
    /// Statements prepared each time they run.
    pub fn new(client: &'a C) -> Self {
        Db {
            client,
            statements: None,
        }
    }

    /// Statements prepared once in `statements`, which must belong to `client`'s connection.
    pub fn cached(client: &'a C, statements: &'a Statements) -> Self {
        Db {
            client,
            statements: Some(statements),
        }
    }

    /// The client or transaction itself.
    pub fn client(&self) -> &'a C {
        self.client
    }

    async fn statement(&self, sql: &str) -> Result<Statement, Error> {
        let Some(statements) = self.statements else {
            return Ok(self.client.prepare(sql).await?);
        };
        if let Some(s) = statements.get(sql) {
            return Ok(s);
        }
        let s = self.client.prepare(sql).await?;
        statements.put(sql, &s);
        Ok(s)
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let s = self.statement(sql).await?;
        Ok(self.client.query(&s, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let s = self.statement(sql).await?;
        Ok(self.client.query_one(&s, params).await?)
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let s = self.statement(sql).await?;
        Ok(self.client.query_opt(&s, params).await?)
    }

    pub async fn query_raw<P, I>(&self, sql: &str, params: I) -> Result<RowStream, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P> + Sync + Send,
        I::IntoIter: ExactSizeIterator,
    {
        let s = self.statement(sql).await?;
        Ok(self.client.query_raw(&s, params).await?)
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let s = self.statement(sql).await?;
        Ok(self.client.execute(&s, params).await?)
    }

    /// `pg_notify` on `channel` ([`db::notify`] with this client's prepared statement),
    /// delivered when the transaction commits.
    pub async fn notify<T: serde::Serialize>(
        &self,
        channel: Channel<T>,
        message: &T,
    ) -> Result<(), Error> {
        let statement = self.statement(db::NOTIFY_SQL).await?;
        Ok(db::notify(self.client, &statement, channel, message).await?)
    }

    /// Statements without parameters, sent as text (never prepared).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        Ok(self.client.batch_execute(sql).await?)
    }
}
