//! An outcome's payload: the cart's events read back from the log (their ids, what is in
//! the cart or was bought) and the [`CartOutcome`] built from them.
//!
//! The log has no index by cart (one would slow every insert); a cart's events lie between
//! its first and last event time, which the BRIN index on `timestamp` narrows to a few
//! blocks. Carts are read in groups close in time, so each group's window stays narrow.

use std::collections::{BTreeMap, HashMap, HashSet};

use cartflow_schemas::{CartOutcome, Money, OutcomeItem, OutcomeKind};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Changed;
use crate::Error;
use crate::delta::{Action, LogEvent, cart_key};

/// Carts whose events one query reads.
const CARTS_PER_READ: usize = 500;

/// One event of a cart, as an outcome needs it.
#[derive(Debug, Clone)]
pub(crate) struct CartLine {
    pub event_id: Uuid,
    pub product_id: i64,
    pub price: Decimal,
    pub action: Action,
    pub timestamp: DateTime<Utc>,
}

/// The applied events (`tx_id < applied_below`) of each of `changed`'s carts, by cart key,
/// in event time order. Sorts `changed` by first event time.
pub(crate) async fn read_carts(
    client: &impl GenericClient,
    changed: &mut [Changed],
    applied_below: i64,
) -> Result<HashMap<String, Vec<CartLine>>, Error> {
    changed.sort_by_key(|c| c.first_at);
    let mut carts: HashMap<String, Vec<CartLine>> = HashMap::new();
    for group in changed.chunks(CARTS_PER_READ) {
        let from = group.iter().map(|c| c.first_at).min();
        let to = group.iter().map(|c| c.last_at).max();
        let wanted: HashSet<&str> = group.iter().map(|c| c.cart_key.as_str()).collect();
        let keys: Vec<&str> = wanted.iter().copied().collect();
        let customers: Vec<i64> = group.iter().map(|c| c.customer_id).collect();
        let rows = client
            .query(
                "SELECT event_id, customer_id, product_id, product_price, action, \"timestamp\", \
                     session_id FROM events \
                 WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 AND tx_id < $3 \
                   AND (session_id = ANY($4) OR (session_id IS NULL AND customer_id = ANY($5)))",
                &[&from, &to, &applied_below, &keys, &customers],
            )
            .await?;
        for row in rows {
            let action: &str = row.get(4);
            let action =
                Action::from_db(action).ok_or_else(|| Error::UnknownAction(action.into()))?;
            let e = LogEvent {
                customer_id: row.get(1),
                product_id: row.get(2),
                price: row.get(3),
                action,
                timestamp: row.get(5),
                session_id: row.get(6),
            };
            let key = cart_key(&e);
            if !wanted.contains(key.as_str()) {
                continue;
            }
            carts.entry(key).or_default().push(CartLine {
                event_id: row.get(0),
                product_id: e.product_id,
                price: e.price,
                action: e.action,
                timestamp: e.timestamp,
            });
        }
    }
    for lines in carts.values_mut() {
        lines.sort_by_key(|l| (l.timestamp, l.event_id));
    }
    Ok(carts)
}

/// The `sequence`-th outcome of cart `c`, of kind `kind`, from its `events`.
pub(crate) fn outcome(
    c: &Changed,
    kind: OutcomeKind,
    sequence: i32,
    decided_at: DateTime<Utc>,
    events: &[CartLine],
) -> CartOutcome {
    let (items, value) = match kind {
        OutcomeKind::Purchased => (lines(events, |a| a == Action::Purchase), c.revenue),
        OutcomeKind::Emptied => (vec![], Decimal::ZERO),
        OutcomeKind::Abandoned | OutcomeKind::Reopened => (in_cart(events), c.left_value),
    };
    CartOutcome {
        outcome_id: CartOutcome::id_for(&c.cart_key, sequence),
        cart_key: c.cart_key.clone(),
        customer_id: c.customer_id,
        outcome: kind,
        sequence,
        items,
        value: money(value),
        first_event_at: c.first_at,
        last_event_at: c.last_at,
        decided_at,
        event_ids: events.iter().map(|l| l.event_id).collect(),
    }
}

/// The products of the events `counts` admits, a line per product at its latest price.
fn lines(events: &[CartLine], counts: impl Fn(Action) -> bool) -> Vec<OutcomeItem> {
    let mut by_product: BTreeMap<i64, (i32, Decimal)> = BTreeMap::new();
    for l in events.iter().filter(|l| counts(l.action)) {
        let e = by_product.entry(l.product_id).or_default();
        *e = (e.0 + 1, l.price);
    }
    to_items(by_product)
}

/// What is still in the cart: per product, added minus removed, where positive.
fn in_cart(events: &[CartLine]) -> Vec<OutcomeItem> {
    let mut by_product: BTreeMap<i64, (i32, Decimal)> = BTreeMap::new();
    for l in events {
        let e = by_product.entry(l.product_id).or_default();
        match l.action {
            Action::Add => *e = (e.0 + 1, l.price),
            Action::Remove => e.0 -= 1,
            Action::Purchase => {}
        }
    }
    by_product.retain(|_, (n, _)| *n > 0);
    to_items(by_product)
}

fn to_items(by_product: BTreeMap<i64, (i32, Decimal)>) -> Vec<OutcomeItem> {
    by_product
        .into_iter()
        .map(|(product_id, (quantity, price))| OutcomeItem {
            product_id,
            quantity,
            unit_price: money(price),
        })
        .collect()
}

/// Prices come from `numeric(18,2)` columns, which always fit; a sum that somehow did not
/// is clamped rather than failing the step.
fn money(d: Decimal) -> Money {
    Money::try_from(d).unwrap_or(Money::from_cents(Money::MAX_CENTS))
}
