//! Writing a batch to PostgreSQL in one transaction.
//!
//! Events go in with one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT (event_id) DO NOTHING`;
//! customers and products are upserted in offset order, so the latest version wins. A row
//! that PostgreSQL refuses (a customer whose email another customer already has, say) is
//! dead-lettered under a savepoint instead of failing the batch. The transaction ends with a
//! NOTIFY on [`EVENTS_CHANNEL`](cartflow_common::db::EVENTS_CHANNEL), delivered on commit.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use rust_decimal::Decimal;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::Error;
use crate::batch::{Batch, DeadLetter, Origin, StoredEvent};

/// What one write did.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub stored: u64,
    pub duplicates: u64,
    /// Rows PostgreSQL refused, dead-lettered in the same transaction.
    pub refused: Vec<DeadLetter>,
}

const INSERT_EVENTS: &str = r#"
INSERT INTO events (event_id, customer_id, product_id, product_title, product_price,
                    product_image, action, description, "timestamp", session_id, user_agent,
                    ip_address, kafka_partition, kafka_offset, published_at)
SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::numeric[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::text[],
                     $12::inet[], $13::int4[], $14::int8[], $15::timestamptz[])
ON CONFLICT (event_id) DO NOTHING"#;

const UPSERT_CUSTOMER: &str = "
INSERT INTO customers (customer_id, name, age, email, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (customer_id) DO UPDATE
SET name = EXCLUDED.name, age = EXCLUDED.age, email = EXCLUDED.email,
    created_at = EXCLUDED.created_at, updated_at = now()";

const UPSERT_PRODUCT: &str = "
INSERT INTO products (product_id, title, price, description, image_url, category,
                      rating_rate, rating_count, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (product_id) DO UPDATE
SET title = EXCLUDED.title, price = EXCLUDED.price, description = EXCLUDED.description,
    image_url = EXCLUDED.image_url, category = EXCLUDED.category,
    rating_rate = EXCLUDED.rating_rate, rating_count = EXCLUDED.rating_count,
    created_at = EXCLUDED.created_at, updated_at = now()";

const INSERT_DEAD_LETTER: &str = "
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, message_key, payload, reason, error)
VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Writes the whole batch in one transaction and commits it.
pub async fn write(pool: &Pool, batch: &Batch) -> Result<Written, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut written = Written::default();
    let mut refused = Vec::new();

    for (customer, origin) in &batch.customers {
        let c = customer;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&c.customer_id, &c.name, &c.age, &c.email, &c.created_at];
        if let Some(dead) = guarded(&tx, UPSERT_CUSTOMER, &params, origin, "customer").await? {
            refused.push(dead);
        }
    }
    for (product, origin) in &batch.products {
        let p = product;
        let price = Decimal::from(p.price);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &p.product_id,
            &p.title,
            &price,
            &p.description,
            &p.image_url,
            &p.category,
            &p.rating.rate,
            &p.rating.count,
            &p.created_at,
        ];
        if let Some(dead) = guarded(&tx, UPSERT_PRODUCT, &params, origin, "product").await? {
            refused.push(dead);
        }
    }
    if !batch.events.is_empty() {
        let before = refused.len();
        written.stored = insert_events_or_refuse(&tx, &batch.events, &mut refused).await?;
        let rejected = (refused.len() - before) as u64;
        written.duplicates = batch.events.len() as u64 - rejected - written.stored;
    }
    for dead in batch.dead_letters.iter().chain(&refused) {
        tx.execute(
            INSERT_DEAD_LETTER,
            &[
                &dead.origin.topic,
                &dead.origin.partition,
                &dead.origin.offset,
                &dead.key,
                &dead.payload,
                &dead.reason,
                &dead.error,
            ],
        )
        .await?;
    }
    if written.stored > 0 {
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[
                &cartflow_common::db::EVENTS_CHANNEL,
                &written.stored.to_string(),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    written.refused = refused;
    Ok(written)
}

/// Runs one upsert under a savepoint; a row PostgreSQL refuses comes back as a dead letter.
async fn guarded(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    origin: &Origin,
    what: &str,
) -> Result<Option<DeadLetter>, Error> {
    tx.batch_execute("SAVEPOINT row_write").await?;
    match tx.execute(sql, params).await {
        Ok(_) => {
            tx.batch_execute("RELEASE SAVEPOINT row_write").await?;
            Ok(None)
        }
        Err(e) if is_refusal(&e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT row_write").await?;
            Ok(Some(DeadLetter {
                origin: origin.clone(),
                key: None,
                payload: None,
                reason: "rejected_by_database",
                error: format!("{what} refused: {e}"),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Integrity and data errors: the row will never be accepted as it is.
fn is_refusal(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let code = c.code();
        code.starts_with("22") || code.starts_with("23") || *c == SqlState::CHECK_VIOLATION
    })
}

/// Inserts the events in one statement; when PostgreSQL refuses the statement, inserts them
/// one by one under savepoints and dead-letters the ones it refuses.
async fn insert_events_or_refuse(
    tx: &Transaction<'_>,
    events: &[StoredEvent],
    refused: &mut Vec<DeadLetter>,
) -> Result<u64, Error> {
    tx.batch_execute("SAVEPOINT bulk_events").await?;
    match insert_events(tx, events).await {
        Ok(stored) => {
            tx.batch_execute("RELEASE SAVEPOINT bulk_events").await?;
            return Ok(stored);
        }
        Err(Error::Database(e)) if is_refusal(&e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT bulk_events")
                .await?;
        }
        Err(e) => return Err(e),
    }
    let mut stored = 0;
    for event in events {
        tx.batch_execute("SAVEPOINT row_write").await?;
        match insert_events(tx, std::slice::from_ref(event)).await {
            Ok(n) => {
                tx.batch_execute("RELEASE SAVEPOINT row_write").await?;
                stored += n;
            }
            Err(Error::Database(e)) if is_refusal(&e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT row_write").await?;
                refused.push(DeadLetter {
                    origin: event.origin.clone(),
                    key: None,
                    payload: None,
                    reason: "rejected_by_database",
                    error: format!("event {} refused: {e}", event.event.event_id),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(stored)
}

async fn insert_events(tx: &Transaction<'_>, events: &[StoredEvent]) -> Result<u64, Error> {
    let n = events.len();
    let mut event_id: Vec<Uuid> = Vec::with_capacity(n);
    let mut customer_id: Vec<i64> = Vec::with_capacity(n);
    let mut product_id: Vec<i64> = Vec::with_capacity(n);
    let mut title: Vec<&str> = Vec::with_capacity(n);
    let mut price: Vec<Decimal> = Vec::with_capacity(n);
    let mut image: Vec<&str> = Vec::with_capacity(n);
    let mut action: Vec<&str> = Vec::with_capacity(n);
    let mut description: Vec<&str> = Vec::with_capacity(n);
    let mut timestamp: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut session: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut agent: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut ip: Vec<Option<IpAddr>> = Vec::with_capacity(n);
    let mut partition: Vec<i32> = Vec::with_capacity(n);
    let mut offset: Vec<i64> = Vec::with_capacity(n);
    let mut published: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    for s in events {
        let e = &s.event;
        event_id.push(e.event_id);
        customer_id.push(e.customer_id);
        product_id.push(e.product_id);
        title.push(&e.product_title);
        price.push(Decimal::from(e.product_price));
        image.push(&e.product_image);
        action.push(e.action.as_str());
        description.push(&e.description);
        timestamp.push(e.timestamp);
        session.push(e.session_id.as_deref());
        agent.push(e.user_agent.as_deref());
        ip.push(e.ip_address);
        partition.push(s.origin.partition);
        offset.push(s.origin.offset);
        published.push(s.published_ms.and_then(DateTime::from_timestamp_millis));
    }
    let stored = tx
        .execute(
            INSERT_EVENTS,
            &[
                &event_id,
                &customer_id,
                &product_id,
                &title,
                &price,
                &image,
                &action,
                &description,
                &timestamp,
                &session,
                &agent,
                &ip,
                &partition,
                &offset,
                &published,
            ],
        )
        .await?;
    Ok(stored)
}
