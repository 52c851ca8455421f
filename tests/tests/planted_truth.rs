//! The simulator plants effects in its data, and `cartflow-producer --print-truth` says what a
//! backfill's analytics should show, each number with the sampling error of one run. Here a
//! 30-day backfill of two seeds is stored and projected, and every planted quantity must be
//! found within 3 standard errors: abandonment overall (both cart rates and the item rate, and
//! the four cart states), by category, price band, age group and value tier, and the peak hour,
//! weekday and month. The insight sentences must agree with their own numbers, and customers'
//! RFM segments must not move when somebody else buys.

use std::collections::BTreeMap;

use cartflow_producer::population::Population;
use cartflow_producer::profile::Profile;
use cartflow_producer::simulate::Simulator;
use cartflow_producer::truth::{self, Estimate, MONTHS, Truth, WEEKDAYS};
use cartflow_producer::{catalogue, customers};
use cartflow_schemas::CartEvent;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::project_everything;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use tokio_postgres::Client;

const POPULATION_SEED: u64 = 1;
const CUSTOMERS: u32 = 2_000;
/// A backfill of this many days: about 530,000 events with the shipped profile.
const DAYS: i64 = 30;
/// Simulated runs behind each expected value.
const REPLICAS: u32 = 16;
/// How far a measured quantity may lie from the truth, in standard errors.
const LIMIT: f64 = 3.0;

async fn store_catalogue(client: &Client, customers: &[cartflow_schemas::Customer]) {
    for p in catalogue::fallback() {
        client
            .execute(
                "INSERT INTO products (product_id, title, price, category) VALUES ($1, $2, $3, $4)",
                &[
                    &p.product_id,
                    &p.title,
                    &Decimal::from(p.price),
                    &p.category,
                ],
            )
            .await
            .expect("insert product");
    }
    let ids: Vec<i64> = customers.iter().map(|c| c.customer_id).collect();
    let names: Vec<&str> = customers.iter().map(|c| c.name.as_str()).collect();
    let ages: Vec<i32> = customers.iter().map(|c| c.age).collect();
    let emails: Vec<&str> = customers.iter().map(|c| c.email.as_str()).collect();
    client
        .execute(
            "INSERT INTO customers (customer_id, name, age, email) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::text[])",
            &[&ids, &names, &ages, &emails],
        )
        .await
        .expect("insert customers");
}

async fn store_events(client: &Client, events: &[CartEvent], first_offset: i64) {
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    let customers: Vec<i64> = events.iter().map(|e| e.customer_id).collect();
    let products: Vec<i64> = events.iter().map(|e| e.product_id).collect();
    let titles: Vec<&str> = events.iter().map(|e| e.product_title.as_str()).collect();
    let prices: Vec<Decimal> = events
        .iter()
        .map(|e| Decimal::from(e.product_price))
        .collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let times: Vec<_> = events.iter().map(|e| e.timestamp).collect();
    let sessions: Vec<Option<&str>> = events.iter().map(|e| e.session_id.as_deref()).collect();
    let offsets: Vec<i64> = (first_offset..first_offset + events.len() as i64).collect();
    client
        .execute(
            "INSERT INTO events (event_id, customer_id, product_id, product_title, product_price, \
                 action, \"timestamp\", session_id, kafka_partition, kafka_offset) \
             SELECT id, c, p, t, price, a, ts, s, 0, o FROM UNNEST($1::uuid[], $2::int8[], \
                 $3::int8[], $4::text[], $5::numeric[], $6::text[], $7::timestamptz[], \
                 $8::text[], $9::int8[]) AS x(id, c, p, t, price, a, ts, s, o)",
            &[
                &ids, &customers, &products, &titles, &prices, &actions, &times, &sessions,
                &offsets,
            ],
        )
        .await
        .expect("insert events");
}

/// Stores a `DAYS` backfill of `seed` ending at `until`, exactly what `cartflow-producer backfill
/// --seed SEED --until UNTIL` publishes, and projects it.
async fn backfill(client: &mut Client, seed: u64, until: DateTime<Utc>) -> i64 {
    let people = customers::generate(POPULATION_SEED, CUSTOMERS);
    store_catalogue(client, &people).await;
    let mut sim = Simulator::new(
        seed,
        POPULATION_SEED,
        Profile::default(),
        people,
        catalogue::fallback(),
        until - Duration::days(DAYS),
    );
    let mut batch = Vec::with_capacity(10_000);
    let mut stored = 0i64;
    loop {
        let e = sim.next_event();
        if e.timestamp > until {
            break;
        }
        batch.push(e);
        if batch.len() == 10_000 {
            store_events(client, &batch, stored).await;
            stored += batch.len() as i64;
            batch.clear();
        }
    }
    store_events(client, &batch, stored).await;
    stored += batch.len() as i64;
    project_everything(client, 100_000).await;
    stored
}

/// The measured values and their truths, and the ones further than `LIMIT` from it.
#[derive(Default)]
struct Check {
    lines: Vec<String>,
    failed: Vec<String>,
}

impl Check {
    fn near(&mut self, what: &str, measured: f64, truth: &Estimate) {
        let z = truth.z(measured, REPLICAS);
        let line = format!(
            "{what:<42} measured {measured:>12.4}   planted {:>12.4} ± {:<9.4} z = {z:+.2}",
            truth.expected, truth.sampling_error
        );
        if z.abs() > LIMIT || z.is_nan() {
            self.failed.push(line.clone());
        }
        self.lines.push(line);
    }

    /// The measured peak of `counts` must be the planted one, or statistically tied with it.
    fn peak(&mut self, what: &str, measured: usize, planted: usize, counts: &[Estimate]) {
        let (m, p) = (&counts[measured], &counts[planted]);
        let se = (m.sampling_error.powi(2) + p.sampling_error.powi(2)).sqrt()
            * (1.0 + 1.0 / f64::from(REPLICAS)).sqrt();
        let gap = (p.expected - m.expected) / se.max(f64::MIN_POSITIVE);
        let line =
            format!("{what:<42} measured {measured:>12}   planted {planted:>12}   gap {gap:.2} SE");
        if measured != planted && gap > LIMIT {
            self.failed.push(line.clone());
        }
        self.lines.push(line);
    }
}

async fn floats(client: &Client, sql: &str) -> BTreeMap<String, f64> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn check_totals(client: &Client, truth: &Truth, check: &mut Check) {
    let k = client
        .query_one(
            "SELECT carts::float8, purchased_carts::float8, abandoned_carts::float8, \
                 emptied_carts::float8, open_carts::float8, cart_abandonment_rate::float8, \
                 strict_abandonment_rate::float8, cart_to_purchase_rate::float8, \
                 item_abandonment_rate::float8, events::float8 FROM v_kpis",
            &[],
        )
        .await
        .unwrap();
    let rows: [(&str, &Estimate); 10] = [
        ("carts", &truth.carts),
        ("purchased carts", &truth.purchased_carts),
        ("abandoned carts", &truth.abandoned_carts),
        ("emptied carts", &truth.emptied_carts),
        ("open carts", &truth.open_carts),
        ("cart abandonment rate", &truth.cart_abandonment_rate),
        ("strict abandonment rate", &truth.strict_abandonment_rate),
        ("cart-to-purchase rate", &truth.cart_to_purchase_rate),
        ("item abandonment rate", &truth.item_abandonment_rate),
        ("events", &truth.events),
    ];
    for (i, (what, planted)) in rows.iter().enumerate() {
        check.near(what, k.get(i), planted);
    }
}

async fn check_breakdowns(client: &Client, truth: &Truth, people: &Population, check: &mut Check) {
    let categories = floats(
        client,
        "SELECT category, item_abandonment_rate::float8 FROM v_category_performance",
    )
    .await;
    for (category, planted) in &truth.item_abandonment_by_category {
        check.near(
            &format!("item abandonment, {category}"),
            categories[category],
            planted,
        );
    }
    let bands = floats(
        client,
        "SELECT band, item_abandonment_rate::float8 FROM v_abandonment_by_price_band",
    )
    .await;
    for (band, planted) in &truth.item_abandonment_by_price_band {
        check.near(
            &format!("item abandonment, price {band}"),
            bands[*band],
            planted,
        );
    }
    let ages = floats(
        client,
        "SELECT age_group, cart_abandonment_rate::float8 FROM v_age_groups",
    )
    .await;
    for (group, planted) in &truth.cart_abandonment_by_age_group {
        check.near(
            &format!("cart abandonment, age {group}"),
            ages[*group],
            planted,
        );
    }
    // The analytics do not know the simulator's tiers: group their customers by them here.
    let ids: Vec<i64> = people
        .shoppers
        .iter()
        .map(|s| s.customer.customer_id)
        .collect();
    let profile = Profile::default();
    let tiers: Vec<String> = people
        .shoppers
        .iter()
        .map(|s| profile.tiers[s.tier].name.clone())
        .collect();
    let by_tier: BTreeMap<String, f64> = client
        .query(
            "SELECT t.tier, 1 - sum(s.purchased_carts)::float8 / sum(s.carts) \
             FROM analytics.customer_stats s \
             JOIN UNNEST($1::int8[], $2::text[]) AS t(customer_id, tier) USING (customer_id) \
             GROUP BY t.tier",
            &[&ids, &tiers],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (tier, planted) in &truth.cart_abandonment_by_tier {
        check.near(
            &format!("cart abandonment, tier {tier}"),
            by_tier[tier],
            planted,
        );
    }
}

async fn check_peaks(client: &Client, truth: &Truth, check: &mut Check) {
    let peak = |dimension: &'static str| async move {
        client
            .query_one(
                "SELECT peak FROM v_peaks WHERE dimension = $1 AND measure = 'events'",
                &[&dimension],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let hour: usize = peak("hour of day").await.parse().unwrap();
    check.peak(
        "peak hour",
        hour,
        truth.peak_hour as usize,
        &truth.events_by_hour,
    );
    let day = peak("day of week").await;
    let planted_day = WEEKDAYS
        .iter()
        .position(|d| *d == truth.peak_weekday)
        .unwrap();
    let day = WEEKDAYS.iter().position(|d| *d == day).unwrap();
    check.peak("peak weekday", day, planted_day, &truth.events_by_weekday);
    let month = peak("month").await;
    let planted_month = MONTHS.iter().position(|m| *m == truth.peak_month).unwrap();
    let month = MONTHS.iter().position(|m| *m == month).unwrap();
    check.peak("peak month", month, planted_month, &truth.events_by_month);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_find_every_planted_quantity_within_three_standard_errors() {
    // Two windows, two seeds: one inside a month, one across the holiday season's start.
    let runs = [
        (7, Utc.with_ymd_and_hms(2026, 9, 28, 6, 0, 0).unwrap()),
        (11, Utc.with_ymd_and_hms(2026, 11, 14, 18, 30, 0).unwrap()),
    ];
    let mut failures = Vec::new();
    for (seed, until) in runs {
        let db = TestDb::new().await;
        let mut client = db.client().await;
        let stored = backfill(&mut client, seed, until).await;
        assert!(stored > 400_000, "only {stored} events");
        let people = customers::generate(POPULATION_SEED, CUSTOMERS);
        let profile = Profile::default();
        let population = Population::new(POPULATION_SEED, people.clone(), &profile);
        let run = truth::Run {
            seed,
            population_seed: POPULATION_SEED,
            profile,
            customers: people,
            products: catalogue::fallback(),
            start: until - Duration::days(DAYS),
            until,
            abandon_after: Duration::minutes(30),
        };
        let truth = truth::compute(&run, REPLICAS);
        let mut check = Check::default();
        check_totals(&client, &truth, &mut check).await;
        check_breakdowns(&client, &truth, &population, &mut check).await;
        check_peaks(&client, &truth, &mut check).await;
        eprintln!("seed {seed}, {stored} events:\n{}", check.lines.join("\n"));
        failures.extend(
            check
                .failed
                .into_iter()
                .map(|f| format!("seed {seed}: {f}")),
        );
        if seed == runs[0].0 {
            check_insight_sentences(&client).await;
            check_segments_hold(&mut client, until).await;
        }
        db.cleanup().await;
    }
    assert!(
        failures.is_empty(),
        "further than {LIMIT} standard errors from the truth:\n{}",
        failures.join("\n")
    );
}

/// Every percentage in an insight sentence is the share of the counts it stands beside, and no
/// product or category is named by two findings.
async fn check_insight_sentences(client: &Client) {
    let rows = client
        .query("SELECT finding, subject, evidence FROM v_insights", &[])
        .await
        .unwrap();
    assert!(rows.len() >= 7, "{} findings", rows.len());
    let mut named = Vec::new();
    for r in &rows {
        let (finding, subject, evidence): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        eprintln!("{finding}: {subject} — {evidence}");
        let (part, whole, shown) =
            shares(&evidence).unwrap_or_else(|| panic!("{finding}: no share in {evidence:?}"));
        let computed = format!(
            "{:.1}",
            (part as f64 * 1000.0 / whole as f64).round() / 10.0
        );
        assert_eq!(shown, computed, "{finding}: {evidence}");
        if finding.starts_with("product") || finding.starts_with("category") {
            assert!(
                !named.contains(&subject),
                "{subject} is named twice: {rows:?}"
            );
            named.push(subject);
        }
    }
}

/// The first share of a sentence: (part, whole, the percentage shown). "N added, M bought
/// (P% …" is M of N; every other sentence starts "PART … of [the|its] WHOLE … (P%".
fn shares(evidence: &str) -> Option<(i64, i64, String)> {
    let (before, after) = evidence.split_once('(')?;
    let shown = after.split_once('%')?.0.to_owned();
    let numbers: Vec<i64> = before
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (a, b) = (*numbers.first()?, *numbers.get(1)?);
    if before.contains(" added, ") {
        Some((b, a, shown))
    } else {
        Some((a, b, shown))
    }
}

/// A customer's RFM reading: hours since the last purchase, the three scores, the segment.
type Rfm = (f64, i32, i32, i32, String);

async fn rfm(client: &Client) -> BTreeMap<i64, Rfm> {
    client
        .query(
            "SELECT customer_id, hours_since_purchase::float8, recency_score, frequency_score, \
                 monetary_score, segment FROM v_high_value_customers",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
        .collect()
}

/// One more purchase, 71 s after the last event, by a customer who never bought: a new buyer
/// appears and the clock moves, and nobody else's scores move unless their own hours since
/// purchase crossed a recency threshold (with quintile scores, a new buyer shifts everybody's
/// boundaries).
async fn check_segments_hold(client: &mut Client, until: DateTime<Utc>) {
    let before = rfm(client).await;
    let hours: Vec<f64> = before.values().map(|r| r.0).collect();
    let mut distinct = hours.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(
        distinct.len() * 2 > hours.len(),
        "recency separates customers: {} distinct values among {}",
        distinct.len(),
        hours.len()
    );
    let newcomer: i64 = client
        .query_one(
            "SELECT customer_id FROM analytics.customer_stats WHERE purchased_carts = 0 \
             ORDER BY customer_id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut sim = Simulator::new(
        99,
        POPULATION_SEED,
        Profile::default(),
        customers::generate(POPULATION_SEED, CUSTOMERS),
        catalogue::fallback(),
        until,
    );
    let mut add = sim.next_event();
    add.customer_id = newcomer;
    add.session_id = Some("rfm-newcomer".into());
    add.action = cartflow_schemas::Action::AddToCart;
    add.timestamp = until + Duration::seconds(60);
    let mut buy = add.clone();
    buy.event_id = uuid::Uuid::new_v4();
    buy.action = cartflow_schemas::Action::PurchaseCart;
    buy.timestamp = until + Duration::seconds(71);
    store_events(client, &[add, buy], 10_000_000).await;
    project_everything(client, 100_000).await;
    let after = rfm(client).await;
    assert!(after.contains_key(&newcomer), "the newcomer is a buyer now");
    let crossed = |a: f64, b: f64| [24.0, 72.0, 168.0, 720.0].iter().any(|t| a < *t && *t <= b);
    let moved: Vec<_> = before
        .iter()
        .filter(|(id, b)| {
            let a = &after[*id];
            (b.1 != a.1 && !crossed(b.0, a.0)) || b.2 != a.2 || b.3 != a.3
        })
        .collect();
    assert!(moved.is_empty(), "scores moved: {moved:?}");
}
