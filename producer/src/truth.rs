//! The planted truth: what the profile makes the data say, for `--print-truth`.
//!
//! Rates are measured on sessions sampled from the model itself (start times drawn over a
//! whole year in proportion to traffic), so they hold for any profile, however its effects
//! combine. The analytics should recover them from a large enough backfill.

use std::collections::BTreeMap;

use cartflow_schemas::{Action, Customer, Product};
use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::population::Population;
use crate::profile::{AGE_GROUPS, Profile};
use crate::session::{Model, Plan};

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

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
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

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Truth {
    pub sessions_sampled: u64,
    /// Carts (sessions) that end without a purchase ÷ carts created.
    pub cart_abandonment_rate: f64,
    pub cart_to_purchase_rate: f64,
    pub mean_events_per_session: f64,
    pub mean_session_seconds: f64,
    /// Hour of day (UTC) with the most events.
    pub peak_hour: u32,
    pub peak_weekday: &'static str,
    pub peak_month: &'static str,
    /// Share of events in each hour of day (UTC).
    pub events_by_hour: Vec<f64>,
    /// Items left in abandoned carts ÷ items added and not removed, by category.
    pub item_abandonment_by_category: BTreeMap<String, f64>,
    pub most_abandoned_category: String,
    /// Items left in abandoned carts ÷ items added and not removed, by price band.
    pub item_abandonment_by_price_band: BTreeMap<&'static str, f64>,
    pub cart_abandonment_by_age_group: BTreeMap<&'static str, f64>,
    pub cart_abandonment_by_tier: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Ratio {
    part: u64,
    whole: u64,
}

impl Ratio {
    fn add(&mut self, part: bool) {
        self.whole += 1;
        self.part += u64::from(part);
    }

    fn value(self) -> f64 {
        if self.whole == 0 {
            0.0
        } else {
            self.part as f64 / self.whole as f64
        }
    }
}

/// Samples `sessions` sessions of `customers` shopping from `products` under `profile`.
pub fn compute(
    seed: u64,
    population_seed: u64,
    profile: &Profile,
    customers: Vec<Customer>,
    products: Vec<Product>,
    sessions: u64,
) -> Truth {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7275_7468);
    let model = Model::new(profile.clone(), products);
    let population = Population::new(population_seed, customers, profile);
    let year = Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let max_weight = model.max_traffic_weight();

    let mut tally = Tally::default();
    for _ in 0..sessions {
        let start = sample_start(&mut rng, &model, year, max_weight);
        let who = population.pick(&mut rng);
        let shopper = &population.shoppers[who];
        let tier = &profile.tiers[shopper.tier];
        let plan = model.plan(&mut rng, tier, shopper.age_group, start);
        tally.add(&model, &plan, start, &tier.name, shopper.age_group);
    }
    tally.into_truth(sessions)
}

/// What the sampled sessions add up to, before it becomes rates.
#[derive(Debug, Default)]
struct Tally {
    carts: Ratio,
    events: u64,
    duration_ms: i64,
    by_hour: [u64; 24],
    by_weekday: [u64; 7],
    by_month: [u64; 12],
    by_category: BTreeMap<String, Ratio>,
    by_band: BTreeMap<&'static str, Ratio>,
    by_age: BTreeMap<&'static str, Ratio>,
    by_tier: BTreeMap<String, Ratio>,
}

impl Tally {
    fn add(
        &mut self,
        model: &Model,
        plan: &Plan,
        start: DateTime<Utc>,
        tier: &str,
        age_group: usize,
    ) {
        let abandoned = !plan.purchased;
        self.carts.add(abandoned);
        self.by_age
            .entry(AGE_GROUPS[age_group].0)
            .or_default()
            .add(abandoned);
        self.by_tier
            .entry(tier.to_owned())
            .or_default()
            .add(abandoned);
        self.events += plan.steps.len() as u64;
        self.duration_ms += plan.duration_ms();
        for step in &plan.steps {
            let at: DateTime<Utc> = start + Duration::milliseconds(step.offset_ms);
            self.by_hour[at.hour() as usize] += 1;
            self.by_weekday[at.weekday().num_days_from_monday() as usize] += 1;
            self.by_month[at.month0() as usize] += 1;
        }
        // Every added item that was not removed is either bought (the cart was purchased) or
        // abandoned; removed items count in neither.
        for step in plan.steps.iter().filter(|s| s.action == Action::AddToCart) {
            let product = &model.products[step.product];
            let removed = plan.steps.iter().any(|s| {
                s.action == Action::RemoveFromCart
                    && s.offset_ms > step.offset_ms
                    && s.product == step.product
            });
            if removed {
                continue;
            }
            self.by_category
                .entry(product.category.clone())
                .or_default()
                .add(abandoned);
            self.by_band
                .entry(price_band(product.price.cents()))
                .or_default()
                .add(abandoned);
        }
    }

    fn into_truth(self, sessions: u64) -> Truth {
        let argmax = |xs: &[u64]| {
            xs.iter()
                .enumerate()
                .max_by_key(|(_, v)| **v)
                .map_or(0, |(i, _)| i)
        };
        let rates =
            |m: BTreeMap<&'static str, Ratio>| m.into_iter().map(|(k, r)| (k, r.value())).collect();
        let category_rates: BTreeMap<String, f64> = self
            .by_category
            .iter()
            .map(|(k, r)| (k.clone(), r.value()))
            .collect();
        let most_abandoned_category = category_rates
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let events = self.events;
        Truth {
            sessions_sampled: sessions,
            cart_abandonment_rate: self.carts.value(),
            cart_to_purchase_rate: 1.0 - self.carts.value(),
            mean_events_per_session: events as f64 / sessions.max(1) as f64,
            mean_session_seconds: self.duration_ms as f64 / 1000.0 / sessions.max(1) as f64,
            peak_hour: argmax(&self.by_hour) as u32,
            peak_weekday: WEEKDAYS[argmax(&self.by_weekday)],
            peak_month: MONTHS[argmax(&self.by_month)],
            events_by_hour: self
                .by_hour
                .iter()
                .map(|n| *n as f64 / events.max(1) as f64)
                .collect(),
            item_abandonment_by_category: category_rates,
            most_abandoned_category,
            item_abandonment_by_price_band: rates(self.by_band),
            cart_abandonment_by_age_group: rates(self.by_age),
            cart_abandonment_by_tier: self
                .by_tier
                .into_iter()
                .map(|(k, r)| (k, r.value()))
                .collect(),
        }
    }
}

/// A start time in the year before `year_end`, drawn in proportion to traffic.
fn sample_start<R: RngExt>(
    rng: &mut R,
    model: &Model,
    year_end: DateTime<Utc>,
    max_weight: f64,
) -> DateTime<Utc> {
    let year_ms = 365 * 24 * 3_600_000i64;
    loop {
        let t = year_end - Duration::milliseconds(rng.random_range(0..year_ms));
        if rng.random::<f64>() * max_weight <= model.traffic_weight(t) {
            return t;
        }
    }
}
