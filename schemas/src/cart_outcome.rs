//! `CartOutcome`: what became of a cart (purchased, abandoned, emptied, or reopened by a
//! later event), as the projector decided it. Derived from the log, published on its own
//! topic for services that act on carts (a mailer, a coupon service).

use std::fmt;
use std::str::FromStr;

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{self, Fields};
use crate::{Error, Money, Record, SchemaRef};

/// The decision. `Reopened` corrects an earlier `Abandoned` or `Emptied`: the cart had
/// another event after it, and its next outcome follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Purchased,
    Abandoned,
    Emptied,
    Reopened,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 4] = [
        OutcomeKind::Purchased,
        OutcomeKind::Abandoned,
        OutcomeKind::Emptied,
        OutcomeKind::Reopened,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Purchased => "purchased",
            OutcomeKind::Abandoned => "abandoned",
            OutcomeKind::Emptied => "emptied",
            OutcomeKind::Reopened => "reopened",
        }
    }

    pub(crate) const fn index(self) -> u32 {
        match self {
            OutcomeKind::Purchased => 0,
            OutcomeKind::Abandoned => 1,
            OutcomeKind::Emptied => 2,
            OutcomeKind::Reopened => 3,
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutcomeKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        OutcomeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::field("outcome", format!("unknown outcome {s:?}")))
    }
}

/// One product line of a cart: bought (for `Purchased`) or still in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeItem {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartOutcome {
    pub outcome_id: Uuid,
    pub cart_key: String,
    pub customer_id: i64,
    pub outcome: OutcomeKind,
    /// 1 for the cart's first outcome, 2 for the next, ...
    pub sequence: i32,
    pub items: Vec<OutcomeItem>,
    pub value: Money,
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    /// The event time (latest event seen) when it was decided.
    pub decided_at: DateTime<Utc>,
    pub event_ids: Vec<Uuid>,
}

/// The namespace of outcome ids (a UUID v5 of the cart key and the sequence).
const OUTCOME_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7274_666c_6f77_2d6f_7574_636f_6d65);

impl CartOutcome {
    /// The id of a cart's `sequence`-th outcome: the same whoever decides it and however
    /// often, so a subscriber can de-duplicate by it and a re-decision is recognised.
    pub fn id_for(cart_key: &str, sequence: i32) -> Uuid {
        Uuid::new_v5(
            &OUTCOME_NAMESPACE,
            format!("{cart_key}\u{1f}{sequence}").as_bytes(),
        )
    }

    /// The Kafka key: the customer, as for cart events.
    pub fn key(&self) -> String {
        self.customer_id.to_string()
    }
}

impl Record for CartOutcome {
    const FAMILY: &'static str = "CartOutcome";
    const LATEST: SchemaRef = SchemaRef::CartOutcome;

    fn to_avro(&self, _schema: SchemaRef) -> Value {
        let items = self
            .items
            .iter()
            .map(|i| {
                Value::Record(vec![
                    ("product_id".into(), Value::Long(i.product_id)),
                    ("quantity".into(), Value::Int(i.quantity)),
                    ("unit_price".into(), record::money(i.unit_price)),
                ])
            })
            .collect();
        Value::Record(vec![
            ("outcome_id".into(), Value::Uuid(self.outcome_id)),
            ("cart_key".into(), Value::String(self.cart_key.clone())),
            ("customer_id".into(), Value::Long(self.customer_id)),
            (
                "outcome".into(),
                Value::Enum(self.outcome.index(), self.outcome.as_str().into()),
            ),
            ("sequence".into(), Value::Int(self.sequence)),
            ("value".into(), record::money(self.value)),
            ("items".into(), Value::Array(items)),
            (
                "first_event_at".into(),
                record::timestamp(self.first_event_at),
            ),
            (
                "last_event_at".into(),
                record::timestamp(self.last_event_at),
            ),
            ("decided_at".into(), record::timestamp(self.decided_at)),
            (
                "event_ids".into(),
                Value::Array(self.event_ids.iter().map(|id| Value::Uuid(*id)).collect()),
            ),
        ])
    }

    fn write_body(&self, _schema: SchemaRef, out: &mut Vec<u8>) -> Option<()> {
        crate::fast::cart_outcome(out, self);
        Some(())
    }

    fn from_avro(mut f: Fields) -> Result<Self, Error> {
        let items = f
            .array("items")?
            .into_iter()
            .map(|v| {
                let mut i = Fields::of(v)?;
                Ok(OutcomeItem {
                    product_id: i.long("product_id")?,
                    quantity: i.int("quantity")?,
                    unit_price: i.money("unit_price")?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(CartOutcome {
            outcome_id: f.uuid("outcome_id")?,
            cart_key: f.string("cart_key")?,
            customer_id: f.long("customer_id")?,
            outcome: f.symbol("outcome")?.parse()?,
            sequence: f.int("sequence")?,
            items,
            value: f.money("value")?,
            first_event_at: f.timestamp("first_event_at")?,
            last_event_at: f.timestamp("last_event_at")?,
            decided_at: f.timestamp("decided_at")?,
            event_ids: f.uuids("event_ids")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use chrono::TimeZone;

    fn outcome() -> CartOutcome {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
        CartOutcome {
            outcome_id: CartOutcome::id_for("s-1", 1),
            cart_key: "s-1".into(),
            customer_id: 7,
            outcome: OutcomeKind::Abandoned,
            sequence: 1,
            items: vec![OutcomeItem {
                product_id: 3,
                quantity: 2,
                unit_price: Money::from_cents(1999),
            }],
            value: Money::from_cents(3998),
            first_event_at: t,
            last_event_at: t + chrono::TimeDelta::minutes(3),
            decided_at: t + chrono::TimeDelta::minutes(40),
            event_ids: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
        }
    }

    #[test]
    fn round_trips_through_the_codec() {
        let codec = Codec::single_object();
        let o = outcome();
        let bytes = codec.encode(&o).unwrap();
        assert_eq!(codec.decode::<CartOutcome>(&bytes).unwrap(), o);
    }

    #[test]
    fn ids_are_deterministic_and_distinct_per_sequence() {
        assert_eq!(CartOutcome::id_for("s-1", 1), CartOutcome::id_for("s-1", 1));
        assert_ne!(CartOutcome::id_for("s-1", 1), CartOutcome::id_for("s-1", 2));
        assert_ne!(
            CartOutcome::id_for("s-1", 1),
            CartOutcome::id_for("s-11", 1)
        );
    }
}
