//! Drill-down: the raw events behind a number, read-only from the log (docs/gateway.md,
//! "Drill-down").
//!
//! `/api/events` pages through the events of a product, a customer, a cart and/or a time range,
//! newest first, with their partition and offset; `/api/carts/{key}` shows one cart in its state
//! and its events oldest first, each with what the cart held after it. Parameters are checked
//! here and refused with 400 and a sentence naming the parameter; pages are bounded.
//!
//! The log has no b-tree index a page could be read from in order (they cost the consumer too
//! much: migrations/V8), only a BRIN index on event time. A page is therefore read in time
//! windows walking backwards from the newest event, each four times wider than the last, until
//! it is full; the last window is open towards the past, so nothing is ever missed.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Events per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
/// Most events a cart's history lists.
const MAX_CART_EVENTS: i64 = 1_000;
/// Longest cart key accepted (session ids are UUIDs; v1 keys are "customer N on DATE").
const MAX_KEY_LEN: usize = 200;

const EVENT_COLUMNS: &str = "event_id, customer_id, product_id, product_title, \
    product_price::text, action, \"timestamp\", session_id, kafka_partition, kafka_offset";

/// The query string of `/api/events`, as text: parsed here so that a bad value gets a message
/// that names it.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    product_id: Option<String>,
    customer_id: Option<String>,
    cart: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A refusal: 400 and why.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response()
    }
}

fn whole(name: &str, value: &str) -> Result<i64, BadRequest> {
    value
        .parse()
        .map_err(|_| BadRequest(format!("{name}: {value:?} is not a whole number")))
}

pub(crate) fn time(name: &str, value: &str) -> Result<DateTime<Utc>, BadRequest> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| {
            BadRequest(format!(
                "{name}: {value:?} is not an RFC 3339 time such as 2026-11-30T08:00:00Z"
            ))
        })
}

fn cart_key(value: &str) -> Result<&str, BadRequest> {
    if value.is_empty() || value.len() > MAX_KEY_LEN {
        return Err(BadRequest(format!(
            "cart: a key of 1 to {MAX_KEY_LEN} characters is needed"
        )));
    }
    Ok(value)
}

/// Where a page starts: just older than this event (newest first).
#[derive(Debug, Clone, Copy)]
struct Cursor {
    at: DateTime<Utc>,
    event_id: Uuid,
}

impl Cursor {
    fn parse(value: &str) -> Result<Cursor, BadRequest> {
        let bad = || BadRequest(format!("cursor: {value:?} is not a cursor this API gave"));
        let (micros, id) = value.split_once('_').ok_or_else(bad)?;
        let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?);
        Ok(Cursor {
            at: at.ok_or_else(bad)?,
            event_id: id.parse().map_err(|_| bad())?,
        })
    }

    fn text(self) -> String {
        format!("{}_{}", self.at.timestamp_micros(), self.event_id)
    }
}

/// The first window a page is looked for in, before it widens.
const FIRST_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// A checked `/api/events` query, as SQL conditions and their parameters.
#[derive(Debug, Default)]
struct Filter {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
    limit: i64,
    /// The range's bounds, and the cursor's time: where the backward walk starts and stops.
    from: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    /// The cart or customer asked for, whose projected time span bounds the walk.
    spanned: Option<Spanned>,
}

/// What the analytics know the time span of.
#[derive(Debug, Clone)]
enum Spanned {
    Cart(String),
    Customer(i64),
    /// Products have no span of their own: only whether the analytics know them.
    Product(i64),
}

impl Filter {
    fn push(&mut self, condition: &str, value: impl ToSql + Sync + Send + 'static) {
        self.push_all(condition, vec![Box::new(value)]);
    }

    /// A condition with one `?` per value, in order.
    fn push_all(&mut self, condition: &str, values: Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut sql = String::new();
        for (i, part) in condition.split('?').enumerate() {
            if i > 0 {
                sql.push_str(&format!("${}", self.params.len() + i));
            }
            sql.push_str(part);
        }
        self.params.extend(values);
        self.conditions.push(sql);
    }

    /// The parameters, as a query takes them.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    fn parse(q: &EventsQuery) -> Result<Filter, BadRequest> {
        let mut f = Filter {
            limit: DEFAULT_LIMIT,
            ..Filter::default()
        };
        if let Some(v) = &q.limit {
            f.limit = whole("limit", v)?;
            if !(1..=MAX_LIMIT).contains(&f.limit) {
                return Err(BadRequest(format!(
                    "limit: {v} is outside 1 to {MAX_LIMIT}"
                )));
            }
        }
        if let Some(v) = &q.product_id {
            let id = whole("product_id", v)?;
            f.push("product_id = ?", id);
            f.spanned = Some(Spanned::Product(id));
        }
        if let Some(v) = &q.customer_id {
            let id = whole("customer_id", v)?;
            f.push("customer_id = ?", id);
            f.spanned = Some(Spanned::Customer(id));
        }
        if let Some(v) = &q.cart {
            let key = cart_key(v)?;
            f.push_cart(key);
            f.spanned = Some(Spanned::Cart(key.to_owned()));
        }
        let from = q.from.as_deref().map(|v| time("from", v)).transpose()?;
        let to = q.to.as_deref().map(|v| time("to", v)).transpose()?;
        if let (Some(a), Some(b)) = (from, to)
            && a >= b
        {
            return Err(BadRequest(format!("from ({a}) must be before to ({b})")));
        }
        if let Some(a) = from {
            f.push("\"timestamp\" >= ?", a);
        }
        if let Some(b) = to {
            f.push("\"timestamp\" < ?", b);
        }
        f.from = from;
        f.before = to;
        if let Some(v) = &q.cursor {
            let c = Cursor::parse(v)?;
            let after_cursor = c.at + chrono::Duration::microseconds(1);
            f.before = Some(f.before.map_or(after_cursor, |b| b.min(after_cursor)));
            // The first condition lets the time index bound the scan.
            f.push("\"timestamp\" <= ?", c.at);
            f.push_all(
                "(\"timestamp\", event_id) < (?, ?)",
                vec![Box::new(c.at), Box::new(c.event_id)],
            );
        }
        Ok(f)
    }

    /// A cart's events: its session's, or for a v1 cart ("customer N on DATE") that customer's
    /// events without a session on that UTC day.
    fn push_cart(&mut self, key: &str) {
        if let Some((customer, day)) = v1_cart(key) {
            let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            self.push("customer_id = ?", customer);
            self.push("\"timestamp\" >= ?", start);
            self.push("\"timestamp\" < ?", start + chrono::Duration::days(1));
            self.conditions.push("session_id IS NULL".into());
        } else {
            self.push("session_id = ?", key.to_owned());
        }
    }
}

/// `customer 7 on 2026-11-01` → (7, that day).
fn v1_cart(key: &str) -> Option<(i64, NaiveDate)> {
    let rest = key.strip_prefix("customer ")?;
    let (id, day) = rest.split_once(" on ")?;
    Some((id.parse().ok()?, day.parse().ok()?))
}

fn event_json(r: &Row) -> Value {
    json!({
        "event_id": r.get::<_, Uuid>(0),
        "customer_id": r.get::<_, i64>(1),
        "product_id": r.get::<_, i64>(2),
        "product_title": r.get::<_, String>(3),
        "product_price": r.get::<_, String>(4),
        "action": r.get::<_, String>(5),
        "timestamp": r.get::<_, DateTime<Utc>>(6),
        "session_id": r.get::<_, Option<String>>(7),
        "partition": r.get::<_, i32>(8),
        "offset": r.get::<_, i64>(9),
    })
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "Drill-down query failed.");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The event log cannot be read right now; try again.\n",
    )
        .into_response()
}

/// Up to `filter.limit + 1` events matching `filter`, newest first (one more than the page:
/// whether there is a next one), read window by window backwards in time.
async fn page(
    client: &deadpool_postgres::Client,
    filter: &Filter,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let span = client
        .query_one("SELECT first_hour, watermark FROM v_log_span", &[])
        .await?;
    let (first, watermark): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        (span.get(0), span.get(1));
    // The first window ends at the range's end (or the cursor), or else is open towards the
    // future: events the projector has not reached yet are newer than its watermark.
    let mut hi = filter.before;
    let mut start = filter.before.or(watermark);
    // Below this the walk's last window reaches back without a bound.
    let mut floor = match (filter.from, first) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut bounded_below = false;
    let mut rows = Vec::new();
    if let (Some(spanned), Some(watermark)) = (&filter.spanned, watermark) {
        // A cart or customer is walked only over its own projected span, after the events
        // the projector has not reached (newer than its watermark); one the analytics have
        // never seen has only those. Without this, one that is old or unknown would walk the
        // whole log.
        rows = window(client, filter, Some(watermark), None, filter.limit + 1).await?;
        let Some((first_at, last_at)) = span_of(client, spanned).await? else {
            return Ok(rows);
        };
        let end = last_at + chrono::Duration::microseconds(1);
        let end = filter.before.map_or(end, |b| b.min(end)).min(watermark);
        (hi, start) = (Some(end), Some(end));
        floor = Some(filter.from.map_or(first_at, |a| a.max(first_at)));
        // A product's span is the log's: late events older than it are still walked to.
        bounded_below = !matches!(spanned, Spanned::Product(_));
    }
    let mut width = FIRST_WINDOW;
    loop {
        if rows.len() as i64 > filter.limit {
            return Ok(rows);
        }
        let want = filter.limit + 1 - rows.len() as i64;
        let lo = start.map(|h| h - width);
        let last = match (lo, floor) {
            (Some(lo), Some(floor)) => lo <= floor,
            _ => true,
        };
        // Events at or after `hi` were read by the previous window (or the cursor excludes
        // them); the last window reaches back without a bound, unless a span bounds it.
        let lo_bound = match (last, bounded_below) {
            (false, _) => lo,
            (true, true) => floor,
            (true, false) => None,
        };
        rows.extend(window(client, filter, lo_bound, hi, want).await?);
        if last {
            return Ok(rows);
        }
        (hi, start) = (lo, lo);
        width = width * 4;
    }
}

/// Up to `want` events of `filter` in `[lo, hi)` (either side open when None), newest first.
async fn window(
    client: &deadpool_postgres::Client,
    filter: &Filter,
    lo: Option<DateTime<Utc>>,
    hi: Option<DateTime<Utc>>,
    want: i64,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let mut conditions = filter.conditions.clone();
    let mut params = filter.params();
    if let Some(lo) = &lo {
        params.push(lo);
        conditions.push(format!("\"timestamp\" >= ${}", params.len()));
    }
    if let Some(hi) = &hi {
        params.push(hi);
        conditions.push(format!("\"timestamp\" < ${}", params.len()));
    }
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events");
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    sql.push_str(&format!(
        " ORDER BY \"timestamp\" DESC, event_id DESC LIMIT {want}"
    ));
    client.query(&sql, &params).await
}

/// The projected time span of a cart or customer; None when the analytics have not seen it.
async fn span_of(
    client: &deadpool_postgres::Client,
    spanned: &Spanned,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, tokio_postgres::Error> {
    let row = match spanned {
        Spanned::Cart(key) => {
            client
                .query_opt(
                    "SELECT first_at, last_at FROM v_cart_states WHERE cart_key = $1",
                    &[key],
                )
                .await?
        }
        Spanned::Customer(id) => {
            client
                .query_opt(
                    "SELECT first_seen, last_seen FROM v_customer_span WHERE customer_id = $1",
                    &[id],
                )
                .await?
        }
        Spanned::Product(id) => {
            client
                .query_opt(
                    "SELECT s.first_hour, s.watermark FROM v_log_span s \
                     WHERE EXISTS (SELECT 1 FROM v_product_performance WHERE product_id = $1)",
                    &[id],
                )
                .await?
        }
    };
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// `GET /api/events`: a page of events, newest first, and the cursor of the next page.
pub async fn events(State(pool): State<Pool>, Query(q): Query<EventsQuery>) -> Response {
    let filter = match Filter::parse(&q) {
        Ok(f) => f,
        Err(bad) => return bad.into_response(),
    };
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    let mut rows = match page(&client, &filter).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let more = rows.len() as i64 > filter.limit;
    rows.truncate(filter.limit as usize);
    let next = more.then(|| rows.last()).flatten().map(|r| {
        Cursor {
            at: r.get(6),
            event_id: r.get(0),
        }
        .text()
    });
    let events: Vec<Value> = rows.iter().map(event_json).collect();
    axum::Json(json!({"events": events, "next": next, "limit": filter.limit})).into_response()
}

/// The events of the cart `key`, oldest first: those of `customer` (when given) within `span`.
async fn cart_events(
    client: &deadpool_postgres::Client,
    key: &str,
    customer: Option<i64>,
    (first, last): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let mut filter = Filter::default();
    filter.push_cart(key);
    if let Some(customer) = customer {
        filter.push("customer_id = ?", customer);
    }
    filter.push("\"timestamp\" >= ?", first);
    filter.push("\"timestamp\" <= ?", last);
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {} \
         ORDER BY \"timestamp\", kafka_partition, kafka_offset LIMIT {MAX_CART_EVENTS}",
        filter.conditions.join(" AND ")
    );
    let params = filter.params();
    client.query(&sql, &params).await
}

/// `GET /api/carts/{key}`: the cart in its state, and its events oldest first, each with the
/// items the cart held after it.
pub async fn cart(State(pool): State<Pool>, Path(key): Path<String>) -> Response {
    let key = match cart_key(&key) {
        Ok(k) => k.to_owned(),
        Err(bad) => return bad.into_response(),
    };
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let state = client
        .query_opt(
            "SELECT customer_id, first_at, last_at, events, adds, removes, purchases, items, \
                 value::text, revenue::text, state FROM v_cart_states WHERE cart_key = $1",
            &[&key],
        )
        .await;
    let state = match state {
        Ok(Some(row)) => row,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, "No cart has this key (yet).\n").into_response();
        }
        Err(e) => return unavailable(e),
    };
    // A session belongs to one customer: the customer's index over the cart's span finds its
    // events. Should a session have events of several customers, the span alone finds them.
    let span = (
        state.get::<_, DateTime<Utc>>(1),
        state.get::<_, DateTime<Utc>>(2),
    );
    let mut rows = Vec::new();
    for customer in [Some(state.get::<_, i64>(0)), None] {
        rows = match cart_events(&client, &key, customer, span).await {
            Ok(rows) => rows,
            Err(e) => return unavailable(e),
        };
        if rows.len() as i64 >= state.get::<_, i64>(3).min(MAX_CART_EVENTS) {
            break;
        }
    }
    let mut items = 0i64;
    let history: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut e = event_json(r);
            items += match r.get::<_, &str>(5) {
                "add_to_cart" => 1,
                "remove_from_cart" => -1,
                _ => 0,
            };
            e["items_after"] = json!(items.max(0));
            e
        })
        .collect();
    axum::Json(json!({
        "cart": {
            "cart_key": key,
            "customer_id": state.get::<_, i64>(0),
            "first_at": state.get::<_, DateTime<Utc>>(1),
            "last_at": state.get::<_, DateTime<Utc>>(2),
            "events": state.get::<_, i64>(3),
            "adds": state.get::<_, i64>(4),
            "removes": state.get::<_, i64>(5),
            "purchases": state.get::<_, i64>(6),
            "items": state.get::<_, i64>(7),
            "value": state.get::<_, String>(8),
            "revenue": state.get::<_, String>(9),
            "state": state.get::<_, String>(10),
        },
        "history": history,
        "truncated": rows.len() as i64 >= MAX_CART_EVENTS,
    }))
    .into_response()
}
