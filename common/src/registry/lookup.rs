//! Schema ids a reader does not know yet, looked up in the registry: with
//! `--schema-registry-url`, the consumer and the gateway's feed look up the id of a
//! Confluent-framed message their codec does not know before decoding it, so that a producer
//! using the registry is read (newer versions of a record included, their added fields
//! skipped) instead of refused. The codec keeps what it learns for good (the caller's `learn`);
//! an id the registry does not know is remembered for a minute, and its messages are refused
//! as `unknown_schema_id` (dead-lettered by the consumer).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Registry;
use crate::Error;
use crate::retry::{Backoff, Class};

/// How long an id the registry did not know is not asked for again.
const FORGET_MISSES_AFTER: Duration = Duration::from_secs(60);

/// Looks up unknown schema ids in one registry.
#[derive(Debug)]
pub struct SchemaLookup {
    registry: Registry,
    misses: Mutex<HashMap<u32, Instant>>,
}

/// What a lookup decided about the message that needed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Decode it now: the codec knows the id, or the registry says it has no such id (the
    /// decoder then dead-letters it).
    Decode,
    /// The shutdown came while the registry was unreachable: leave the message unread, for the
    /// next member to get it again.
    Stopped,
}

impl SchemaLookup {
    /// A lookup in the registry at `url` (its Confluent API's base).
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(SchemaLookup {
            registry: Registry::new(url)?,
            misses: Mutex::default(),
        })
    }

    /// Asks the registry for schema `id` and hands its JSON to `learn` (the codec's, which
    /// says the record family it is, or why it is not one). A registry that cannot be reached
    /// is retried until it answers or `shutdown` comes: the message is not bad, only not
    /// readable yet.
    pub async fn learn(
        &self,
        id: u32,
        learn: impl FnOnce(&str) -> Result<&'static str, String>,
        shutdown: &CancellationToken,
    ) -> Result<Lookup, Error> {
        if self.missed_recently(id) {
            return Ok(Lookup::Decode);
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match self.registry.schema(id).await {
                Ok(Some(schema)) => {
                    match learn(&schema) {
                        Ok(family) => info!(
                            id,
                            family,
                            registry = self.registry.url(),
                            "Learned a schema id from the registry."
                        ),
                        Err(e) => warn!(
                            id,
                            error = %e,
                            "The registry's schema is not a contract record; its messages are refused."
                        ),
                    }
                    return Ok(Lookup::Decode);
                }
                Ok(None) => {
                    warn!(
                        id,
                        registry = self.registry.url(),
                        "The registry does not know this schema id; its messages are refused."
                    );
                    self.misses
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id, Instant::now());
                    return Ok(Lookup::Decode);
                }
                Err(e) if e.class() == Class::Transient => {
                    warn!(
                        id,
                        error = %e,
                        retry_in = ?backoff.peek(),
                        "Cannot look up a schema id; retrying."
                    );
                    if !backoff.wait(shutdown).await {
                        return Ok(Lookup::Stopped);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn missed_recently(&self, id: u32) -> bool {
        let mut misses = self
            .misses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match misses.get(&id) {
            Some(at) if at.elapsed() < FORGET_MISSES_AFTER => true,
            Some(_) => {
                misses.remove(&id);
                false
            }
            None => false,
        }
    }
}
