//! An outcome's payload: the cart's events read back from the log (their ids, what is in
//! the cart or was bought) and the [`CartOutcome`] built from them.
//!
//! A cart's events are found through the index on `session_id`; a v1 cart (no session: a
//! customer's day) through its time window, which the BRIN index on `timestamp` narrows,
//! read in groups close in time so each group's window stays narrow.

use std::collections::{BTreeMap, HashMap, HashSet};

use cartflow_schemas::{CartOutcome, Money, OutcomeItem, OutcomeKind};
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Changed;
use crate::Error;
use crate::cents::Cents;
use crate::delta::{Action, LogEvent, cart_key};
use crate::sql::Db;

/// Carts whose events one query reads.
const CARTS_PER_READ: usize = 500;

/// One event of a cart, as an outcome needs it.
#[derive(Debug, Clone)]
pub(crate) struct CartLine {
    pub event_id: Uuid,
    pub product_id: i64,
    pub price: Cents,
    pub action: Action,
    pub timestamp: DateTime<Utc>,
}

/// The applied events (`tx_id < applied_below`) of each of `changed`'s carts, by cart key,
/// in event time order: through the session index, and for the carts it finds nothing for
/// (v1 carts, keyed by customer and day) through their time window. Sorts `changed` by first
/// event time.
pub(crate) async fn read_carts(
    client: &Db<'_, impl GenericClient + Sync>,
    changed: &mut [Changed],
    applied_below: i64,
) -> Result<HashMap<String, Vec<CartLine>>, Error> {
    let mut carts: HashMap<String, Vec<CartLine>> = HashMap::new();
    for group in changed.chunks(CARTS_PER_READ) {
        let keys: Vec<&str> = group.iter().map(|c| c.cart_key.as_str()).collect();
        let rows = client
            .query(
                // One probe of the session index per key, as store::stored_carts reads
                // carts. `tx_id + 0` keeps the planner off the tx_id index: on a log grown
                // since its last analysis it took that index (`tx_id < $2` is nearly every
                // row) and read the whole log for each group, 38-190 ms a call, three quarters
                // of the projector's time at 5,000 events/s in such runs (#18).
                &format!(
                    "SELECT e.* FROM unnest($1::text[]) AS k(key), LATERAL ( \
                         SELECT {COLUMNS} FROM events \
                         WHERE session_id = k.key AND tx_id + 0 < $2 OFFSET 0) AS e"
                ),
                &[&keys, &applied_below],
            )
            .await?;
        collect(rows, &keys.iter().copied().collect(), &mut carts)?;
    }
    changed.sort_by_key(|c| c.first_at);
    let v1: Vec<&Changed> = changed
        .iter()
        .filter(|c| !carts.contains_key(&c.cart_key))
        .collect();
    for group in v1.chunks(CARTS_PER_READ) {
        let from = group.iter().map(|c| c.first_at).min();
        let to = group.iter().map(|c| c.last_at).max();
        let wanted: HashSet<&str> = group.iter().map(|c| c.cart_key.as_str()).collect();
        let customers: Vec<i64> = group.iter().map(|c| c.customer_id).collect();
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM events \
                     WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 AND tx_id < $3 \
                       AND session_id IS NULL AND customer_id = ANY($4)"
                ),
                &[&from, &to, &applied_below, &customers],
            )
            .await?;
        collect(rows, &wanted, &mut carts)?;
    }
    for lines in carts.values_mut() {
        lines.sort_by_key(|l| (l.timestamp, l.event_id));
    }
    Ok(carts)
}

/// The columns [`collect`] reads.
const COLUMNS: &str =
    "event_id, customer_id, product_id, product_price, action, \"timestamp\", session_id";

/// Adds the `rows` of the `wanted` carts to `carts`.
fn collect(
    rows: Vec<tokio_postgres::Row>,
    wanted: &HashSet<&str>,
    carts: &mut HashMap<String, Vec<CartLine>>,
) -> Result<(), Error> {
    for row in rows {
        let action: &str = row.get(4);
        let action = Action::from_db(action).ok_or_else(|| Error::UnknownAction(action.into()))?;
        let e = LogEvent {
            customer_id: row.get(1),
            product_id: row.get(2),
            price: row.get(3),
            action,
            timestamp: row.get(5),
            session_id: row.get(6),
        };
        let key = cart_key(&e);
        if !wanted.contains(&*key) {
            continue;
        }
        carts.entry(key.into_owned()).or_default().push(CartLine {
            event_id: row.get(0),
            product_id: e.product_id,
            price: e.price,
            action: e.action,
            timestamp: e.timestamp,
        });
    }
    Ok(())
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
        OutcomeKind::Emptied => (vec![], Cents::ZERO),
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
    let mut by_product: BTreeMap<i64, (i32, Cents)> = BTreeMap::new();
    for l in events.iter().filter(|l| counts(l.action)) {
        let e = by_product.entry(l.product_id).or_default();
        *e = (e.0 + 1, l.price);
    }
    to_items(by_product)
}

/// What is still in the cart: per product, added minus removed, where positive.
fn in_cart(events: &[CartLine]) -> Vec<OutcomeItem> {
    let mut by_product: BTreeMap<i64, (i32, Cents)> = BTreeMap::new();
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

fn to_items(by_product: BTreeMap<i64, (i32, Cents)>) -> Vec<OutcomeItem> {
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
fn money(c: Cents) -> Money {
    Money::from_cents(c.0.clamp(-Money::MAX_CENTS, Money::MAX_CENTS))
}
