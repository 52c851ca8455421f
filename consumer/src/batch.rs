//! One batch of consumed messages, decoded and sorted into what goes where.

use std::collections::HashMap;

use cartflow_schemas::{CartEvent, Codec, Customer, Product};

/// Which of cartflow's topics a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    CartEvents,
    Customers,
    Products,
}

impl TopicKind {
    /// A low-cardinality metric label.
    pub const fn label(self) -> &'static str {
        match self {
            TopicKind::CartEvents => "cart_events",
            TopicKind::Customers => "customers",
            TopicKind::Products => "products",
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A message as it came off the broker: where from, and its bytes. Kept beside every decoded
/// row, so a row PostgreSQL refuses is dead-lettered whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub origin: Origin,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Header names and values, in order (empty for most messages: no allocation then).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A cart event with the message it came in.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: CartEvent,
    pub raw: Raw,
    /// The Kafka message timestamp (milliseconds since the epoch), when it has one.
    pub published_ms: Option<i64>,
}

/// A message that cannot be stored, kept whole with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub raw: Raw,
    pub reason: &'static str,
    pub error: String,
}

/// Messages decoded into rows, plus the offsets to commit once they are stored.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<StoredEvent>,
    pub customers: Vec<(Customer, Raw)>,
    pub products: Vec<(Product, Raw)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The next offset to read, per (topic, partition).
    pub next_offsets: HashMap<(String, i32), i64>,
    pub messages: usize,
    /// Messages framed with a legacy single-object fingerprint (read all the same).
    pub legacy_fingerprints: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Decodes one message into the batch. Bad input becomes a dead letter, never an error.
    pub fn add(&mut self, codec: &Codec, kind: TopicKind, raw: Raw, published_ms: Option<i64>) {
        self.messages += 1;
        let origin = &raw.origin;
        let next = self
            .next_offsets
            .entry((origin.topic.clone(), origin.partition))
            .or_insert(0);
        *next = (*next).max(origin.offset + 1);
        let bytes = raw.payload.as_deref().unwrap_or_default();
        if Codec::has_legacy_fingerprint(bytes) {
            self.legacy_fingerprints += 1;
        }
        let decoded = match kind {
            TopicKind::CartEvents => codec
                .decode::<CartEvent>(bytes)
                .and_then(|e| e.validate().map(|()| Row::Event(e))),
            TopicKind::Customers => codec
                .decode::<Customer>(bytes)
                .and_then(|c| c.validate().map(|()| Row::Customer(c))),
            TopicKind::Products => codec
                .decode::<Product>(bytes)
                .and_then(|p| p.validate().map(|()| Row::Product(p))),
        };
        match decoded {
            Ok(Row::Event(event)) => self.events.push(StoredEvent {
                event,
                raw,
                published_ms,
            }),
            Ok(Row::Customer(c)) => self.customers.push((c, raw)),
            Ok(Row::Product(p)) => self.products.push((p, raw)),
            Err(e) => self.dead_letters.push(DeadLetter {
                raw,
                reason: e.reason(),
                error: e.to_string(),
            }),
        }
    }
}

/// What a message decodes to.
enum Row {
    Event(CartEvent),
    Customer(Customer),
    Product(Product),
}

impl Batch {
    /// Moves the rows into `lanes` batches, one per writing transaction: events by partition
    /// (so a partition always lands in the same lane), customers, products and dead letters in
    /// the first. The offsets stay here, to be committed once every lane is stored.
    pub fn split_rows(&mut self, lanes: usize) -> Vec<Batch> {
        let lanes = lanes.max(1);
        let mut out: Vec<Batch> = (0..lanes).map(|_| Batch::default()).collect();
        for e in self.events.drain(..) {
            let lane = &mut out[e.raw.origin.partition.rem_euclid(lanes as i32) as usize];
            lane.messages += 1;
            lane.events.push(e);
        }
        let first = &mut out[0];
        first.customers = std::mem::take(&mut self.customers);
        first.products = std::mem::take(&mut self.products);
        first.dead_letters = std::mem::take(&mut self.dead_letters);
        first.messages += first.customers.len() + first.products.len() + first.dead_letters.len();
        out.retain(|b| !b.is_empty());
        out
    }
}
