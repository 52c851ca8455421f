//! The planted truth of one backfill, for `--print-truth`: what the analytics of that run
//! should show, with the sampling error of one run.
//!
//! It runs the simulation itself over the run's window, with the run's population and tiers
//! and the one-cart-at-a-time rule, as `replicas` runs with other event seeds, and reads each
//! as the analytics would (events after the window's end are not published; a cart whose last
//! event is within `abandon_after` of the last event is still open). The expected value of a
//! quantity is its mean over the replicas and its sampling error their standard deviation:
//! what one run's value scatters by around it. The run's own seed is not among the replicas,
//! so a run checked against its truth is an independent draw.

use std::collections::BTreeMap;

use cartflow_schemas::{Action, Customer, Product};
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::Serialize;

use crate::profile::{AGE_GROUPS, Profile};
use crate::simulate::{Session, Simulator};

/// The price bands of the analytics, by lower bound in cents.
pub const PRICE_BANDS: [(&str, i64); 4] = [
    ("under 25", 0),
    ("25 to 100", 2_500),
    ("100 to 500", 10_000),
    ("500 and over", 50_000),
];

pub fn price_band(cents: i64) -> &'static str {
    PRICE_BANDS
        .iter()
        .rev()
        .find(|(_, lo)| cents >= *lo)
        .map_or(PRICE_BANDS[0].0, |(name, _)| name)
}

pub const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// What a truth is computed for: one backfill.
#[derive(Debug, Clone)]
pub struct Run {
    pub seed: u64,
    pub population_seed: u64,
    pub profile: Profile,
    pub customers: Vec<Customer>,
    pub products: Vec<Product>,
    /// The first simulated instant; events up to and including `until` are published.
    pub start: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The projector's `--abandon-after`.
    pub abandon_after: Duration,
}

/// A quantity's expected value in a run, and the standard deviation of one run around it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Estimate {
    pub expected: f64,
    pub sampling_error: f64,
}

impl Estimate {
    fn of(samples: &[f64]) -> Estimate {
        let n = samples.len() as f64;
        if samples.is_empty() {
            return Estimate {
                expected: f64::NAN,
                sampling_error: f64::NAN,
            };
        }
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Estimate {
            expected: mean,
            sampling_error: var.sqrt(),
        }
    }

    /// How many sampling errors `measured` lies from the expected value, counting the error
    /// of the expectation itself (a mean of `replicas` runs).
    pub fn z(&self, measured: f64, replicas: u32) -> f64 {
        let se = self.sampling_error * (1.0 + 1.0 / f64::from(replicas.max(1))).sqrt();
        if se == 0.0 {
            if measured == self.expected {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (measured - self.expected) / se
        }
    }
}

/// The truth of one run. Rates are those of the analytics (README, "The analytics").
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Truth {
    pub seed: u64,
    pub population_seed: u64,
    pub window_start: DateTime<Utc>,
    pub window_until: DateTime<Utc>,
    pub abandon_after_seconds: i64,
    pub replicas: u32,
    pub events: Estimate,
    pub carts: Estimate,
    pub purchased_carts: Estimate,
    pub abandoned_carts: Estimate,
    pub emptied_carts: Estimate,
    pub open_carts: Estimate,
    /// 1 − purchased carts ÷ carts.
    pub cart_abandonment_rate: Estimate,
    /// Abandoned carts ÷ carts.
    pub strict_abandonment_rate: Estimate,
    pub cart_to_purchase_rate: Estimate,
    /// Items abandoned ÷ items kept in carts (added − removed), overall.
    pub item_abandonment_rate: Estimate,
    /// Hour of day (UTC) with the most events expected, and the events of each hour.
    pub peak_hour: u32,
    pub events_by_hour: Vec<Estimate>,
    pub peak_weekday: &'static str,
    /// Monday first.
    pub events_by_weekday: Vec<Estimate>,
    pub peak_month: &'static str,
    /// January first.
    pub events_by_month: Vec<Estimate>,
    pub item_abandonment_by_category: BTreeMap<String, Estimate>,
    pub most_abandoned_category: String,
    pub item_abandonment_by_price_band: BTreeMap<&'static str, Estimate>,
    /// 1 − purchased carts ÷ carts, by the customer's age group.
    pub cart_abandonment_by_age_group: BTreeMap<&'static str, Estimate>,
    /// 1 − purchased carts ÷ carts, by the customer's value tier.
    pub cart_abandonment_by_tier: BTreeMap<String, Estimate>,
}

/// The truth of `run`, from `replicas` simulated runs (at least 2) spread over the cores.
pub fn compute(run: &Run, replicas: u32) -> Truth {
    let replicas = replicas.max(2);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut samples = Samples::default();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u32)
            .map(|w| {
                scope.spawn(move || {
                    (w..replicas)
                        .step_by(threads)
                        .map(|r| replica(run, replica_seed(run.seed, r)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for tally in worker.join().unwrap_or_default() {
                tally.record(&mut samples);
            }
        }
    });
    samples.into_truth(run, replicas)
}

/// The event seed of replica `r`: never the run's own.
fn replica_seed(seed: u64, r: u32) -> u64 {
    // SplitMix64's finaliser: neighbouring inputs give unrelated outputs.
    let mut z =
        seed ^ 0x7275_7468_0000_0000 ^ (u64::from(r) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Simulates one run of the window and tallies it as the analytics would.
fn replica(run: &Run, seed: u64) -> Tally {
    let mut sim = Simulator::new(
        seed,
        run.population_seed,
        run.profile.clone(),
        run.customers.clone(),
        run.products.clone(),
        run.start,
    );
    sim.record_sessions();
    let until_ms = run.until.timestamp_millis();
    // The watermark: the last event the backfill publishes.
    let mut watermark_ms = i64::MIN;
    loop {
        let at = sim.next_event().timestamp.timestamp_millis();
        if at > until_ms {
            break;
        }
        watermark_ms = at;
    }
    let mut tally = Tally::default();
    let open_after = watermark_ms - run.abandon_after.num_milliseconds();
    for session in sim.take_sessions() {
        tally.add(&sim, &session, until_ms, open_after);
    }
    tally
}

#[derive(Debug, Default, Clone, Copy)]
struct Items {
    /// Added − removed.
    kept: i64,
    /// Added − removed − purchased.
    abandoned: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Carts {
    carts: u64,
    purchased: u64,
}

/// One replica's counts.
#[derive(Debug, Default)]
struct Tally {
    carts: u64,
    purchased: u64,
    abandoned: u64,
    emptied: u64,
    open: u64,
    events: u64,
    by_hour: [u64; 24],
    by_weekday: [u64; 7],
    by_month: [u64; 12],
    items: Items,
    by_category: BTreeMap<String, Items>,
    by_band: BTreeMap<&'static str, Items>,
    by_age: BTreeMap<&'static str, Carts>,
    by_tier: BTreeMap<String, Carts>,
}

impl Tally {
    /// Counts the published part of `session`: its events up to `until_ms`. Its cart is open
    /// when it holds items, is not bought, and its last event is after `open_after`.
    fn add(&mut self, sim: &Simulator, session: &Session, until_ms: i64, open_after: i64) {
        let published: Vec<_> = session
            .plan
            .steps
            .iter()
            .filter(|s| session.start_ms + s.offset_ms <= until_ms)
            .collect();
        let Some(last) = published.last() else {
            return;
        };
        let (mut adds, mut removes, mut purchases) = (0, 0, 0);
        for step in &published {
            let product = &sim.model().products[step.product];
            let at = DateTime::from_timestamp_millis(session.start_ms + step.offset_ms)
                .unwrap_or_default();
            self.events += 1;
            self.by_hour[at.hour() as usize] += 1;
            self.by_weekday[at.weekday().num_days_from_monday() as usize] += 1;
            self.by_month[at.month0() as usize] += 1;
            let (kept, abandoned) = match step.action {
                Action::AddToCart => (1, 1),
                Action::RemoveFromCart => (-1, -1),
                Action::PurchaseCart => (0, -1),
            };
            for items in [
                &mut self.items,
                self.by_category
                    .entry(product.category.clone())
                    .or_default(),
                self.by_band
                    .entry(price_band(product.price.cents()))
                    .or_default(),
            ] {
                items.kept += kept;
                items.abandoned += abandoned;
            }
            match step.action {
                Action::AddToCart => adds += 1,
                Action::RemoveFromCart => removes += 1,
                Action::PurchaseCart => purchases += 1,
            }
        }
        let purchased = purchases > 0;
        self.carts += 1;
        if purchased {
            self.purchased += 1;
        } else if adds <= removes {
            self.emptied += 1;
        } else if session.start_ms + last.offset_ms > open_after {
            self.open += 1;
        } else {
            self.abandoned += 1;
        }
        let shopper = &sim.population().shoppers[session.shopper];
        let tier = &sim.model().profile.tiers[shopper.tier].name;
        for carts in [
            self.by_age
                .entry(AGE_GROUPS[shopper.age_group].0)
                .or_default(),
            self.by_tier.entry(tier.clone()).or_default(),
        ] {
            carts.carts += 1;
            carts.purchased += u64::from(purchased);
        }
    }

    /// Adds this replica's value of every quantity to `samples`.
    fn record(self, s: &mut Samples) {
        let carts = self.carts.max(1) as f64;
        let items = |i: Items| (i.kept > 0).then(|| i.abandoned as f64 / i.kept as f64);
        let not_bought =
            |c: Carts| (c.carts > 0).then(|| 1.0 - c.purchased as f64 / c.carts as f64);
        s.push("events", self.events as f64);
        s.push("carts", self.carts as f64);
        s.push("purchased", self.purchased as f64);
        s.push("abandoned", self.abandoned as f64);
        s.push("emptied", self.emptied as f64);
        s.push("open", self.open as f64);
        s.push("cart_abandonment", 1.0 - self.purchased as f64 / carts);
        s.push("strict_abandonment", self.abandoned as f64 / carts);
        s.push("cart_to_purchase", self.purchased as f64 / carts);
        s.push_some("item_abandonment", items(self.items));
        for (h, n) in self.by_hour.iter().enumerate() {
            s.push(&format!("hour/{h}"), *n as f64);
        }
        for (d, n) in self.by_weekday.iter().enumerate() {
            s.push(&format!("weekday/{d}"), *n as f64);
        }
        for (m, n) in self.by_month.iter().enumerate() {
            s.push(&format!("month/{m}"), *n as f64);
        }
        for (k, v) in self.by_category {
            s.push_some(&format!("category/{k}"), items(v));
        }
        for (k, v) in self.by_band {
            s.push_some(&format!("band/{k}"), items(v));
        }
        for (k, v) in self.by_age {
            s.push_some(&format!("age/{k}"), not_bought(v));
        }
        for (k, v) in self.by_tier {
            s.push_some(&format!("tier/{k}"), not_bought(v));
        }
    }
}

/// Every quantity's value in each replica, by name.
#[derive(Debug, Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn push(&mut self, name: &str, value: f64) {
        self.0.entry(name.to_owned()).or_default().push(value);
    }

    fn push_some(&mut self, name: &str, value: Option<f64>) {
        if let Some(v) = value {
            self.push(name, v);
        }
    }

    fn get(&self, name: &str) -> Estimate {
        Estimate::of(self.0.get(name).map_or(&[][..], Vec::as_slice))
    }

    /// The estimates of every quantity named `prefix/…`, by the rest of the name.
    fn group(&self, prefix: &str) -> BTreeMap<String, Estimate> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), Estimate::of(v))))
            .collect()
    }

    fn series(&self, prefix: &str, len: usize) -> Vec<Estimate> {
        (0..len)
            .map(|i| self.get(&format!("{prefix}{i}")))
            .collect()
    }

    fn into_truth(self, run: &Run, replicas: u32) -> Truth {
        let argmax = |xs: &[Estimate]| {
            (0..xs.len())
                .max_by(|a, b| xs[*a].expected.total_cmp(&xs[*b].expected))
                .unwrap_or(0)
        };
        let by_hour = self.series("hour/", 24);
        let by_weekday = self.series("weekday/", 7);
        let by_month = self.series("month/", 12);
        let categories = self.group("category/");
        let most_abandoned_category = categories
            .iter()
            .max_by(|a, b| a.1.expected.total_cmp(&b.1.expected))
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let named = |m: BTreeMap<String, Estimate>, names: &[&'static str]| {
            m.into_iter()
                .filter_map(|(k, v)| Some((*names.iter().find(|n| **n == k)?, v)))
                .collect()
        };
        let band_names: Vec<&'static str> = PRICE_BANDS.iter().map(|(n, _)| *n).collect();
        let age_names: Vec<&'static str> = AGE_GROUPS.iter().map(|(n, _)| *n).collect();
        Truth {
            seed: run.seed,
            population_seed: run.population_seed,
            window_start: run.start,
            window_until: run.until,
            abandon_after_seconds: run.abandon_after.num_seconds(),
            replicas,
            events: self.get("events"),
            carts: self.get("carts"),
            purchased_carts: self.get("purchased"),
            abandoned_carts: self.get("abandoned"),
            emptied_carts: self.get("emptied"),
            open_carts: self.get("open"),
            cart_abandonment_rate: self.get("cart_abandonment"),
            strict_abandonment_rate: self.get("strict_abandonment"),
            cart_to_purchase_rate: self.get("cart_to_purchase"),
            item_abandonment_rate: self.get("item_abandonment"),
            peak_hour: argmax(&by_hour) as u32,
            events_by_hour: by_hour,
            peak_weekday: WEEKDAYS[argmax(&by_weekday)],
            events_by_weekday: by_weekday,
            peak_month: MONTHS[argmax(&by_month)],
            events_by_month: by_month,
            item_abandonment_by_category: categories,
            most_abandoned_category,
            item_abandonment_by_price_band: named(self.group("band/"), &band_names),
            cart_abandonment_by_age_group: named(self.group("age/"), &age_names),
            cart_abandonment_by_tier: self.group("tier/"),
        }
    }
}
