//! `/api/snapshot`: the current state of the raw log, as JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::Error;

/// The snapshot document. Money is a decimal string, exact in every client.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub generated_at: DateTime<Utc>,
    /// Events in the raw log.
    pub events: i64,
    /// Events by action (`add_to_cart`, `remove_from_cart`, `purchase_cart`).
    pub events_by_action: BTreeMap<String, i64>,
    pub customers: i64,
    pub products: i64,
    /// Sum of the prices of purchased items.
    pub revenue: Decimal,
    /// Event time of the newest event.
    pub last_event_at: Option<DateTime<Utc>>,
}

pub async fn load(pool: &Pool) -> Result<Snapshot, Error> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT action, count(*), coalesce(sum(product_price), 0), max(\"timestamp\")
             FROM events GROUP BY action",
            &[],
        )
        .await?;
    let mut snapshot = Snapshot {
        generated_at: Utc::now(),
        events: 0,
        events_by_action: BTreeMap::new(),
        customers: 0,
        products: 0,
        revenue: Decimal::ZERO,
        last_event_at: None,
    };
    for row in rows {
        let action: String = row.get(0);
        let count: i64 = row.get(1);
        let value: Decimal = row.get(2);
        let last: Option<DateTime<Utc>> = row.get(3);
        snapshot.events += count;
        if action == "purchase_cart" {
            snapshot.revenue = value;
        }
        snapshot.last_event_at = snapshot.last_event_at.max(last);
        snapshot.events_by_action.insert(action, count);
    }
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM products)",
            &[],
        )
        .await?;
    snapshot.customers = counts.get(0);
    snapshot.products = counts.get(1);
    Ok(snapshot)
}
