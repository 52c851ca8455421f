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

/// A cart event with its origin.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: CartEvent,
    pub origin: Origin,
    /// The Kafka message timestamp (milliseconds since the epoch), when it has one.
    pub published_ms: Option<i64>,
}

/// A message that cannot be stored, kept whole with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub origin: Origin,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: &'static str,
    pub error: String,
}

/// Messages decoded into rows, plus the offsets to commit once they are stored.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<StoredEvent>,
    pub customers: Vec<(Customer, Origin)>,
    pub products: Vec<(Product, Origin)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The next offset to read, per (topic, partition).
    pub next_offsets: HashMap<(String, i32), i64>,
    pub messages: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Decodes one message into the batch. Bad input becomes a dead letter, never an error.
    pub fn add(
        &mut self,
        codec: &Codec,
        kind: TopicKind,
        origin: Origin,
        published_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        self.messages += 1;
        let next = self
            .next_offsets
            .entry((origin.topic.clone(), origin.partition))
            .or_insert(0);
        *next = (*next).max(origin.offset + 1);
        let bytes = payload.unwrap_or_default();
        let result = match kind {
            TopicKind::CartEvents => codec
                .decode::<CartEvent>(bytes)
                .and_then(|e| e.validate().map(|()| e))
                .map(|event| {
                    self.events.push(StoredEvent {
                        event,
                        origin: origin.clone(),
                        published_ms,
                    })
                }),
            TopicKind::Customers => codec
                .decode::<Customer>(bytes)
                .and_then(|c| c.validate().map(|()| c))
                .map(|c| self.customers.push((c, origin.clone()))),
            TopicKind::Products => codec
                .decode::<Product>(bytes)
                .and_then(|p| p.validate().map(|()| p))
                .map(|p| self.products.push((p, origin.clone()))),
        };
        if let Err(e) = result {
            self.dead_letters.push(DeadLetter {
                origin,
                key: key.map(<[u8]>::to_vec),
                payload: payload.map(<[u8]>::to_vec),
                reason: e.reason(),
                error: e.to_string(),
            });
        }
    }
}

impl Batch {
    /// Moves the rows into `lanes` batches, one per writing transaction: events by partition
    /// (so a partition always lands in the same lane), customers, products and dead letters in
    /// the first. The offsets stay here, to be committed once every lane is stored.
    pub fn split_rows(&mut self, lanes: usize) -> Vec<Batch> {
        let lanes = lanes.max(1);
        let mut out: Vec<Batch> = (0..lanes).map(|_| Batch::default()).collect();
        for e in self.events.drain(..) {
            let lane = &mut out[e.origin.partition.rem_euclid(lanes as i32) as usize];
            lane.messages += 1;
            lane.events.push(e);
        }
        let first = &mut out[0];
        first.customers = std::mem::take(&mut self.customers);
        first.products = std::mem::take(&mut self.products);
        // Cloned: the dead-letter topic is published from this batch after the write.
        first.dead_letters = self.dead_letters.clone();
        first.messages += first.customers.len() + first.products.len() + first.dead_letters.len();
        out.retain(|b| !b.is_empty());
        out
    }
}
