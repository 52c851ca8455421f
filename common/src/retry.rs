//! One policy for failures every service shares: which errors are worth retrying
//! ([`classify_db`], [`classify_kafka`]), how long to wait between tries ([`Backoff`]), what
//! an operator should do about the ones that are not ([`db_hint`]), and which refusals concern
//! one row only ([`refuses_row`]).
//!
//! Transient means the same work may succeed later without anyone acting: the server is
//! restarting, a connection dropped, a lock or serialisation conflict. Permanent means it
//! fails the same way until someone changes something: a missing table or privilege, a wrong
//! password. A service retries the first and stops with one clear line on the second, instead
//! of looping on it forever.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;

/// Whether retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Transient,
    Permanent,
}

/// Classifies a PostgreSQL error by its SQLSTATE class. An error without one is transient
/// (the connection closed, an I/O error: the server went away and may come back) unless the
/// driver itself refused what it was given or got ([`classify_driver`]).
pub fn classify_db(e: &tokio_postgres::Error) -> Class {
    match e.code() {
        None => classify_driver(&e.to_string()),
        Some(code) => classify_sqlstate(code.code()),
    }
}

/// The rule for a driver error without a SQLSTATE, on its message (tokio-postgres keeps its
/// error kinds private; these are the texts of 0.7): a value that does not convert, a column
/// that is not there, a single-row read that found none or several. Those come from the
/// statement and the data, which a reconnect does not change: a projector whose checkpoint
/// row had been deleted retried "query returned an unexpected number of rows" for ever.
pub fn classify_driver(message: &str) -> Class {
    const REFUSALS: [&str; 6] = [
        "error serializing parameter",
        "error deserializing column",
        "invalid column",
        "query returned an unexpected number of",
        "parameters but got",
        "invalid connection string",
    ];
    if REFUSALS.iter().any(|r| message.contains(r)) {
        Class::Permanent
    } else {
        Class::Transient
    }
}

/// The rule behind [`classify_db`], on the five-character SQLSTATE.
pub fn classify_sqlstate(code: &str) -> Class {
    match &code[..code.len().min(2)] {
        // Connection exception, insufficient resources, operator intervention (admin
        // shutdown, crash shutdown, cannot connect now), system error (I/O).
        "08" | "53" | "57" | "58" => Class::Transient,
        // Transaction rollback: serialization failure, deadlock.
        "40" => Class::Transient,
        // Object not in prerequisite state: lock_not_available (55P03) is a busy lock.
        "55" if code == "55P03" => Class::Transient,
        _ => Class::Permanent,
    }
}

/// Whether PostgreSQL refused a row for what it holds (data exceptions, class 22, and
/// integrity constraints, class 23: a bad encoding, a value out of range, a check or unique
/// violation): permanent for that row alone, which a writer then sets aside (the consumer
/// dead-letters it) instead of failing the batch around it.
pub fn refuses_row(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| refuses_row_sqlstate(c.code()))
}

/// The rule behind [`refuses_row`], on the five-character SQLSTATE.
pub fn refuses_row_sqlstate(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23")
}

/// Classifies a Kafka client error. Most broker-side errors are retried by librdkafka itself
/// before they reach us; what arrives and names a configuration or authorisation problem is
/// permanent.
pub fn classify_kafka(e: &KafkaError) -> Class {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => return Class::Permanent,
        other => other.rdkafka_error_code(),
    };
    match code {
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidConfig
            | C::UnsupportedVersion
            | C::UnsupportedFeature,
        ) => Class::Permanent,
        _ => Class::Transient,
    }
}

/// What an operator should do about a permanent PostgreSQL error, by SQLSTATE.
pub fn db_hint(code: &str) -> &'static str {
    match code {
        "42P01" | "42703" | "42883" => {
            "the database is not migrated (a table, column or function is missing): run \
             `cartflow-consumer migrate`, or start without --skip-migrations"
        }
        "42501" => {
            "the role in DATABASE_URL lacks a privilege it needs: grant it, or connect as a role \
             that has it"
        }
        "25006" => "the server accepts only reads (a standby?): point DATABASE_URL at the primary",
        "3D000" => "the database does not exist: run `cartflow-consumer migrate`, which creates it",
        c if c.starts_with("28") => {
            "the server refused the login: check the user and password in DATABASE_URL"
        }
        _ => "this will fail the same way on every try; fix the cause, then restart",
    }
}

/// Exponential backoff from 100 ms, doubling to at most 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The wait the next [`Backoff::wait`] will take.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current wait, then doubles it. False when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.next) => {}
            () = shutdown.cancelled() => return false,
        }
        self.next = (self.next * 2).min(self.max);
        true
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or `give_up_after` has passed, waiting
/// by [`Backoff`] between tries and logging each transient failure with `what`. For work at a
/// service's start (a registration, a first connection) that a restarting peer may delay.
pub async fn transient_retried<T, Fut>(
    what: &str,
    give_up_after: Duration,
    shutdown: &CancellationToken,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, crate::Error>
where
    Fut: std::future::Future<Output = Result<T, crate::Error>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::default();
    loop {
        match attempt().await {
            Err(e) if e.class() == Class::Transient && started.elapsed() < give_up_after => {
                tracing::warn!(error = %e, retry_in = ?backoff.peek(), "{what} failed; retrying.");
                if !backoff.wait(shutdown).await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        let table = [
            ("08006", Class::Transient, "connection failure"),
            ("08001", Class::Transient, "cannot connect"),
            ("57P01", Class::Transient, "admin shutdown (a restart)"),
            (
                "57P03",
                Class::Transient,
                "cannot connect now (starting up)",
            ),
            ("53300", Class::Transient, "too many connections"),
            ("40001", Class::Transient, "serialization failure"),
            ("40P01", Class::Transient, "deadlock"),
            ("55P03", Class::Transient, "lock not available"),
            ("58030", Class::Transient, "I/O error"),
            ("42P01", Class::Permanent, "undefined table"),
            ("42501", Class::Permanent, "insufficient privilege"),
            ("28P01", Class::Permanent, "password authentication failed"),
            ("28000", Class::Permanent, "invalid authorization"),
            ("3D000", Class::Permanent, "database does not exist"),
            ("25006", Class::Permanent, "read-only transaction"),
            ("23505", Class::Permanent, "unique violation"),
            ("22021", Class::Permanent, "bad encoding (a NUL byte)"),
            (
                "55000",
                Class::Permanent,
                "object not in prerequisite state",
            ),
        ];
        for (code, class, what) in table {
            assert_eq!(classify_sqlstate(code), class, "{code} ({what})");
        }
    }

    #[test]
    fn row_refusals_are_data_and_integrity_errors_only() {
        let table = [
            ("22021", true, "bad encoding (a NUL byte)"),
            ("22003", true, "numeric value out of range"),
            ("23505", true, "unique violation"),
            ("23514", true, "check violation"),
            ("23503", true, "foreign key violation"),
            ("42P01", false, "undefined table: every row fails"),
            ("40001", false, "serialization failure: transient"),
            ("08006", false, "connection failure"),
            ("25006", false, "read-only transaction"),
        ];
        for (code, refuses, what) in table {
            assert_eq!(refuses_row_sqlstate(code), refuses, "{code} ({what})");
            if refuses {
                assert_eq!(classify_sqlstate(code), Class::Permanent, "{code} ({what})");
            }
        }
    }

    #[test]
    fn kafka_errors_are_classified() {
        use RDKafkaErrorCode as C;
        let table = [
            (
                KafkaError::MessageProduction(C::BrokerTransportFailure),
                Class::Transient,
            ),
            (
                KafkaError::MessageProduction(C::RequestTimedOut),
                Class::Transient,
            ),
            (
                KafkaError::ConsumerCommit(C::RebalanceInProgress),
                Class::Transient,
            ),
            (
                KafkaError::MessageProduction(C::TopicAuthorizationFailed),
                Class::Permanent,
            ),
            (
                KafkaError::ConsumerCommit(C::GroupAuthorizationFailed),
                Class::Permanent,
            ),
            (KafkaError::ClientCreation("bad".into()), Class::Permanent),
        ];
        for (error, class) in table {
            assert_eq!(classify_kafka(&error), class, "{error}");
        }
    }

    #[test]
    fn every_permanent_error_has_a_hint() {
        assert!(db_hint("42P01").contains("migrate"));
        assert!(db_hint("42501").contains("privilege"));
        assert!(db_hint("28P01").contains("password"));
        assert!(db_hint("99999").contains("fix the cause"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_its_ceiling_and_yields_to_shutdown() {
        let stop = CancellationToken::new();
        let mut b = Backoff::default();
        let waits: Vec<u128> = {
            let mut v = Vec::new();
            for _ in 0..8 {
                v.push(b.peek().as_millis());
                assert!(b.wait(&stop).await);
            }
            v
        };
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        stop.cancel();
        assert!(!b.wait(&stop).await, "a cancelled wait returns false");
    }

    #[test]
    fn driver_refusals_are_permanent_and_lost_connections_transient() {
        for message in [
            "query returned an unexpected number of rows",
            "query returned an unexpected number of columns",
            "error deserializing column 2: cannot convert between the Rust type `i32` and the Postgres type `text`",
            "error serializing parameter 0: value too large",
            "invalid column `nope`",
            "expected 2 parameters but got 1",
            "invalid connection string: unexpected EOF",
        ] {
            assert_eq!(classify_driver(message), Class::Permanent, "{message}");
        }
        for message in [
            "connection closed",
            "error communicating with the server: Connection reset by peer (os error 104)",
            "error connecting to server: Connection refused (os error 111)",
            "timeout waiting for server",
            "unexpected message from server",
        ] {
            assert_eq!(classify_driver(message), Class::Transient, "{message}");
        }
    }
}
