//! Schema ids from a registry: with `--schema-registry-url`, a Confluent-framed message whose
//! schema id the codec does not know is looked up before it is decoded, so that a producer
//! using the registry is read (newer versions of a record included, their added fields
//! skipped) instead of dead-lettered. The codec keeps what it learns for good; an id the
//! registry does not know is remembered for a minute, and its messages are dead-lettered as
//! `unknown_schema_id`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cartflow_common::registry::Registry;
use cartflow_common::retry::{Backoff, Class};
use cartflow_schemas::Codec;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// How long an id the registry did not know is not asked for again.
const FORGET_MISSES_AFTER: Duration = Duration::from_secs(60);

/// Looks up unknown schema ids in one registry.
#[derive(Debug)]
pub(crate) struct SchemaLookup {
    registry: Registry,
    misses: Mutex<HashMap<u32, Instant>>,
}

/// What a lookup decided about the message that needed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Decode it now: the codec knows the id, or the registry says it has no such id (the
    /// decoder then dead-letters it).
    Decode,
    /// The shutdown came while the registry was unreachable: leave the message unread, for the
    /// next member to get it again.
    Stopped,
}

impl SchemaLookup {
    pub(crate) fn new(url: &str) -> Result<Self, Error> {
        Ok(SchemaLookup {
            registry: Registry::new(url)?,
            misses: Mutex::default(),
        })
    }

    /// Makes sure `codec` knows `payload`'s schema id if the registry does. A registry that
    /// cannot be reached is retried until it answers or `shutdown` comes: its messages are not
    /// bad, only not readable yet.
    pub(crate) async fn learn(
        &self,
        codec: &Codec,
        payload: &[u8],
        shutdown: &CancellationToken,
    ) -> Result<Lookup, Error> {
        let Some(id) = codec.unknown_schema_id(payload) else {
            return Ok(Lookup::Decode);
        };
        if self.missed_recently(id) {
            return Ok(Lookup::Decode);
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match self.registry.schema(id).await {
                Ok(Some(schema)) => {
                    match codec.learn(id, &schema) {
                        Ok(writer) => info!(
                            id,
                            family = writer.family(),
                            registry = self.registry.url(),
                            "Learned a schema id from the registry."
                        ),
                        Err(e) => warn!(
                            id,
                            error = %e,
                            "The registry's schema is not a contract record; its messages are dead-lettered."
                        ),
                    }
                    return Ok(Lookup::Decode);
                }
                Ok(None) => {
                    warn!(
                        id,
                        registry = self.registry.url(),
                        "The registry does not know this schema id; its messages are dead-lettered."
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
                Err(e) => return Err(e.into()),
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
