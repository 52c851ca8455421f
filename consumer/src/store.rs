//! Writing a batch to PostgreSQL in one transaction.
//!
//! Events go in with one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT (event_id) DO NOTHING`;
//! customers and products are upserted in offset order, so the latest version wins. A row
//! that PostgreSQL refuses (a customer whose email another customer already has, say) is
//! dead-lettered whole under a savepoint instead of failing the batch, and so is an event whose
//! event_id is already stored with other content. Dead letters are recorded once per
//! (topic, partition, offset), however often the message is redelivered. The transaction ends with a
//! NOTIFY on [`EVENTS`](cartflow_common::channels::EVENTS), delivered on commit. A batch with
//! events first announces itself as an events writer (`cartflow_events_writer()`), which the
//! projector's horizon relies on.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::Error;
use crate::batch::{Batch, DeadLetter, Raw, StoredEvent};
use cartflow_common::{channels, db, retry};
use cartflow_schemas::CartEvent;

/// What one write did.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub stored: u64,
    /// Events whose event_id was already stored with the same content.
    pub duplicates: u64,
    /// Dead letters recorded for the first time by this write, by reason.
    pub new_dead_letters: Vec<&'static str>,
    /// Dead letters (with their `dead_letters.id`) whose copy on the dead-letter topic is
    /// not settled yet: new ones, and redelivered ones a crash left unpublished.
    pub to_publish: Vec<(i64, DeadLetter)>,
}

const INSERT_EVENTS: &str = r#"
INSERT INTO events (event_id, customer_id, product_id, product_title, product_price,
                    product_image, action, description, "timestamp", session_id, user_agent,
                    ip_address, kafka_partition, kafka_offset, published_at)
SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::numeric[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::text[],
                     $12::inet[], $13::int4[], $14::int8[], $15::timestamptz[])
ON CONFLICT (event_id) DO NOTHING"#;

/// The stored content of events, to tell a redelivery from a conflicting duplicate.
const STORED_EVENTS: &str = r#"
SELECT event_id, customer_id, product_id, product_title, product_price, product_image, action,
       description, "timestamp", session_id, user_agent, ip_address, kafka_partition,
       kafka_offset
  FROM events WHERE event_id = ANY($1)"#;

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

/// One row per message (origin and bytes, see migration V5): a redelivery keeps the first row
/// (the no-op update makes RETURNING show it) and learns whether its dead-letter copy is
/// settled.
const INSERT_DEAD_LETTER: &str = "
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, message_key, payload,
                          header_keys, header_values, reason, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (topic, kafka_partition, kafka_offset, md5(coalesce(payload, '\\x'::bytea)))
DO UPDATE SET topic = dead_letters.topic
RETURNING id, dlq_status IS NOT NULL, xmax = 0";

/// Writes the whole batch in one transaction and commits it.
pub async fn write(pool: &Pool, batch: &Batch) -> Result<Written, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut written = Written::default();
    let mut refused = Vec::new();
    // Events first: their statement announces the transaction as an events writer before any
    // write gives it an id. No foreign keys tie them to customers or products.
    if !batch.events.is_empty() {
        written.stored = insert_events_or_refuse(&tx, &batch.events, &mut refused).await?;
        let rejected = refused.len() as u64;
        let not_inserted = batch.events.len() as u64 - rejected - written.stored;
        if not_inserted > 0 {
            let conflicts = conflicting_duplicates(&tx, &batch.events).await?;
            written.duplicates = not_inserted - conflicts.len() as u64;
            refused.extend(conflicts);
        }
    }
    for (customer, raw) in &batch.customers {
        let c = customer;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&c.customer_id, &c.name, &c.age, &c.email, &c.created_at];
        if let Some(dead) = guarded(&tx, UPSERT_CUSTOMER, &params, raw, "customer").await? {
            refused.push(dead);
        }
    }
    for (product, raw) in &batch.products {
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
        if let Some(dead) = guarded(&tx, UPSERT_PRODUCT, &params, raw, "product").await? {
            refused.push(dead);
        }
    }
    for dead in batch.dead_letters.iter().chain(&refused) {
        let (id, settled, inserted) = record_dead_letter(&tx, dead).await?;
        if inserted {
            written.new_dead_letters.push(dead.reason);
        }
        if !settled {
            written.to_publish.push((id, dead.clone()));
        }
    }
    if written.stored > 0 {
        let stored = channels::EventsStored {
            stored: written.stored,
        };
        let statement = tx.prepare_cached(db::NOTIFY_SQL).await?;
        db::notify(&*tx, &statement, channels::EVENTS, &stored).await?;
    }
    tx.commit().await?;
    Ok(written)
}

/// Inserts (or finds) the dead letter's row: its id, whether its dead-letter copy is settled,
/// and whether this call inserted it.
async fn record_dead_letter(
    tx: &Transaction<'_>,
    dead: &DeadLetter,
) -> Result<(i64, bool, bool), Error> {
    let raw = &dead.raw;
    let (keys, values): (Vec<&str>, Vec<Option<&[u8]>>) = raw
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .unzip();
    let has_headers = !keys.is_empty();
    let row = tx
        .query_one(
            INSERT_DEAD_LETTER,
            &[
                &raw.origin.topic,
                &raw.origin.partition,
                &raw.origin.offset,
                &raw.key,
                &raw.payload,
                &has_headers.then_some(keys),
                &has_headers.then_some(values),
                &dead.reason,
                &dead.error,
            ],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Marks dead letters' copies on the dead-letter topic as settled (`published`, `trimmed` or
/// `not_published`), so a redelivery does not publish them again.
pub async fn mark_dead_letters(pool: &Pool, ids: &[i64], status: &str) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    pool.get()
        .await?
        .execute(
            "UPDATE dead_letters SET dlq_status = $1 WHERE id = ANY($2)",
            &[&status, &ids],
        )
        .await?;
    Ok(())
}

/// Runs one upsert under a savepoint; a row PostgreSQL refuses comes back as a dead letter.
async fn guarded(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    raw: &Raw,
    what: &str,
) -> Result<Option<DeadLetter>, Error> {
    tx.batch_execute("SAVEPOINT row_write").await?;
    match tx.execute(sql, params).await {
        Ok(_) => {
            tx.batch_execute("RELEASE SAVEPOINT row_write").await?;
            Ok(None)
        }
        Err(e) if retry::refuses_row(&e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT row_write").await?;
            Ok(Some(refusal(raw, &format!("{what} refused"), &e)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The dead letter for a row PostgreSQL refused: the message whole, and PostgreSQL's own
/// SQLSTATE, message and detail (tokio-postgres's Display says only "db error").
fn refusal(raw: &Raw, what: &str, e: &tokio_postgres::Error) -> DeadLetter {
    let error = match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{what}: SQLSTATE {}: {}", db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (detail: {detail})"));
            }
            text
        }
        None => format!("{what}: {e}"),
    };
    DeadLetter {
        raw: raw.clone(),
        reason: "rejected_by_database",
        error,
    }
}

/// Announces the transaction as an events writer (migrations/V13: the projector's horizon
/// waits only for those), then inserts the events in one statement; when PostgreSQL refuses
/// the statement, inserts them one by one under savepoints and dead-letters the ones it
/// refuses. The announcement and the savepoint go in one round trip, and the savepoint is
/// left for the commit to release.
async fn insert_events_or_refuse(
    tx: &Transaction<'_>,
    events: &[StoredEvent],
    refused: &mut Vec<DeadLetter>,
) -> Result<u64, Error> {
    tx.batch_execute("SELECT cartflow_events_writer(); SAVEPOINT bulk_events")
        .await?;
    match insert_events(tx, events).await {
        Ok(stored) => return Ok(stored),
        Err(e) if e.database().is_some_and(retry::refuses_row) => {
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
            Err(e) if e.database().is_some_and(retry::refuses_row) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT row_write").await?;
                let what = format!("event {} refused", event.event.event_id);
                let db = e.database().expect("checked above");
                refused.push(refusal(&event.raw, &what, db));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(stored)
}

/// The events of the batch whose event_id is stored with other content: the first stays,
/// these are dead-lettered as `conflicting_duplicate`. A redelivery of the same message, or
/// of the same content from another offset, is a plain duplicate.
async fn conflicting_duplicates(
    tx: &Transaction<'_>,
    events: &[StoredEvent],
) -> Result<Vec<DeadLetter>, Error> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event.event_id).collect();
    let rows = tx.query(STORED_EVENTS, &[&ids]).await?;
    let stored: HashMap<Uuid, &tokio_postgres::Row> =
        rows.iter().map(|r| (r.get::<_, Uuid>(0), r)).collect();
    let mut conflicts = Vec::new();
    for e in events {
        let Some(row) = stored.get(&e.event.event_id) else {
            continue; // refused by PostgreSQL, already dead-lettered
        };
        let same_message = row.get::<_, i32>(12) == e.raw.origin.partition
            && row.get::<_, i64>(13) == e.raw.origin.offset;
        if same_message || same_content(row, &e.event) {
            continue;
        }
        conflicts.push(DeadLetter {
            raw: e.raw.clone(),
            reason: "conflicting_duplicate",
            error: format!(
                "event {} is already stored (partition {}, offset {}) with other content; the \
                 first stays",
                e.event.event_id,
                row.get::<_, i32>(12),
                row.get::<_, i64>(13)
            ),
        });
    }
    Ok(conflicts)
}

/// Whether a stored `events` row holds exactly this event.
fn same_content(row: &tokio_postgres::Row, e: &CartEvent) -> bool {
    row.get::<_, i64>(1) == e.customer_id
        && row.get::<_, i64>(2) == e.product_id
        && row.get::<_, &str>(3) == e.product_title
        && row.get::<_, Decimal>(4) == Decimal::from(e.product_price)
        && row.get::<_, &str>(5) == e.product_image
        && row.get::<_, &str>(6) == e.action.as_str()
        && row.get::<_, &str>(7) == e.description
        && row.get::<_, DateTime<Utc>>(8) == e.timestamp
        && row.get::<_, Option<&str>>(9) == e.session_id.as_deref()
        && row.get::<_, Option<&str>>(10) == e.user_agent.as_deref()
        && row.get::<_, Option<IpAddr>>(11) == e.ip_address
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
        partition.push(s.raw.origin.partition);
        offset.push(s.raw.origin.offset);
        published.push(s.published_ms.and_then(DateTime::from_timestamp_millis));
    }
    let insert = tx.prepare_cached(INSERT_EVENTS).await?;
    let stored = tx
        .execute(
            &insert,
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
