//! The simulation: reproducible, consistent over a million events, and showing the patterns
//! the default profile plants.

use std::collections::{HashMap, HashSet};

use cartflow_producer::catalogue;
use cartflow_producer::customers;
use cartflow_producer::profile::Profile;
use cartflow_producer::simulate::Simulator;
use cartflow_producer::truth;
use cartflow_schemas::{Action, CartEvent, Codec};
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
}

fn simulator(seed: u64, customers: u32) -> Simulator {
    let people = customers::generate(seed, customers);
    Simulator::new(
        seed,
        seed,
        Profile::default(),
        people,
        catalogue::fallback(),
        start(),
    )
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let codec = Codec::single_object();
    let (mut a, mut b) = (simulator(7, 100), simulator(7, 100));
    for _ in 0..20_000 {
        let (x, y) = (a.next_event(), b.next_event());
        assert_eq!(codec.encode(&x).unwrap(), codec.encode(&y).unwrap());
    }
    let mut c = simulator(8, 100);
    let first: Vec<_> = (0..10).map(|_| c.next_event().event_id).collect();
    let mut a = simulator(7, 100);
    let other: Vec<_> = (0..10).map(|_| a.next_event().event_id).collect();
    assert_ne!(first, other);
}

#[derive(Default)]
struct Session {
    customer: i64,
    cart: Vec<i64>,
    purchased: bool,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

#[test]
fn a_million_events_keep_every_cart_consistent() {
    let mut sim = simulator(11, 1_000);
    let mut sessions: HashMap<String, Session> = HashMap::new();
    let mut open_session_of: HashMap<i64, String> = HashMap::new();
    let mut ids = HashSet::with_capacity(1_000_000);
    let mut last_time = DateTime::<Utc>::MIN_UTC;
    for _ in 0..1_000_000 {
        let e = sim.next_event();
        assert!(ids.insert(e.event_id), "event ids are unique");
        assert!(e.timestamp >= last_time, "events come in event-time order");
        last_time = e.timestamp;
        let sid = e.session_id.clone().expect("v2 events carry a session");
        assert!(e.user_agent.is_some() && e.ip_address.is_some());
        // A customer shops in one cart at a time.
        if let Some(open) = open_session_of.get(&e.customer_id)
            && *open != sid
        {
            let prev = &sessions[open];
            assert!(
                prev.purchased || prev.last.unwrap() <= e.timestamp,
                "two carts at once"
            );
        }
        open_session_of.insert(e.customer_id, sid.clone());
        let s = sessions.entry(sid).or_insert_with(|| Session {
            customer: e.customer_id,
            ..Session::default()
        });
        assert_eq!(
            s.customer, e.customer_id,
            "a session belongs to one customer"
        );
        s.first.get_or_insert(e.timestamp);
        s.last = Some(e.timestamp);
        match e.action {
            Action::AddToCart => {
                assert!(!s.purchased, "nothing is added after the purchase");
                s.cart.push(e.product_id);
            }
            Action::RemoveFromCart => {
                assert!(!s.purchased, "nothing is removed after the purchase");
                let at = s
                    .cart
                    .iter()
                    .position(|p| *p == e.product_id)
                    .expect("removes only what is in the cart");
                s.cart.swap_remove(at);
            }
            Action::PurchaseCart => {
                let at = s
                    .cart
                    .iter()
                    .position(|p| *p == e.product_id)
                    .expect("buys only what is in the cart");
                s.cart.swap_remove(at);
                s.purchased = true;
            }
        }
    }
    // A purchase empties the cart (one purchase_cart per item), except for a checkout cut off
    // by the end of the sample.
    let unfinished = sessions
        .values()
        .filter(|s| s.purchased && !s.cart.is_empty())
        .count();
    assert!(
        unfinished <= 1,
        "{unfinished} purchases left items in the cart"
    );
    // Most sessions are short.
    let mut minutes: Vec<i64> = sessions
        .values()
        .map(|s| (s.last.unwrap() - s.first.unwrap()).num_minutes())
        .collect();
    minutes.sort_unstable();
    assert!(
        minutes[minutes.len() / 2] <= 3,
        "median session {} min",
        minutes[minutes.len() / 2]
    );
}

/// Sessions and abandoned items of a sample, computed from the events alone.
fn sample(days: i64) -> (Vec<CartEvent>, HashMap<String, bool>) {
    let mut sim = simulator(5, 300);
    let end = start() + Duration::days(days);
    let mut events = Vec::new();
    loop {
        let e = sim.next_event();
        if e.timestamp > end {
            break;
        }
        events.push(e);
    }
    let mut purchased: HashMap<String, bool> = HashMap::new();
    for e in &events {
        let p = purchased.entry(e.session_id.clone().unwrap()).or_default();
        *p |= e.action == Action::PurchaseCart;
    }
    (events, purchased)
}

#[test]
fn planted_patterns_are_visible_in_a_sample() {
    let (events, purchased) = sample(28);
    // Evening beats 4 a.m.
    let at = |h: u32| events.iter().filter(|e| e.timestamp.hour() == h).count();
    assert!(at(20) > 5 * at(4), "20:00 {} vs 04:00 {}", at(20), at(4));
    // Cart abandonment near the 70% shops see.
    let abandoned = purchased.values().filter(|p| !**p).count() as f64 / purchased.len() as f64;
    assert!(
        (0.62..=0.78).contains(&abandoned),
        "cart abandonment {abandoned:.3}"
    );
    // Electronics are abandoned more than jewelery (the profile says so).
    let rate = |category: &str| {
        let products: HashSet<i64> = catalogue::fallback()
            .into_iter()
            .filter(|p| p.category == category)
            .map(|p| p.product_id)
            .collect();
        let mut left: HashMap<(String, i64), i64> = HashMap::new();
        let mut added = 0i64;
        for e in events.iter().filter(|e| products.contains(&e.product_id)) {
            let key = (e.session_id.clone().unwrap(), e.product_id);
            match e.action {
                Action::AddToCart => {
                    added += 1;
                    *left.entry(key).or_default() += 1;
                }
                _ => *left.entry(key).or_default() -= 1,
            }
        }
        let abandoned: i64 = left
            .iter()
            .filter(|((s, _), _)| !purchased[s])
            .map(|(_, n)| *n)
            .sum();
        abandoned as f64 / added as f64
    };
    let (electronics, jewelery) = (rate("electronics"), rate("jewelery"));
    assert!(
        electronics > jewelery + 0.05,
        "electronics {electronics:.3} vs jewelery {jewelery:.3}"
    );
}

#[test]
fn the_truth_describes_the_run() {
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let run = truth::Run {
        seed: 1,
        population_seed: 1,
        profile: Profile::default(),
        customers: customers::generate(1, 200),
        products: catalogue::fallback(),
        start,
        until: start + Duration::days(14),
        abandon_after: Duration::minutes(30),
    };
    let truth = truth::compute(&run, 4);
    assert_eq!(truth.replicas, 4);
    assert_eq!(truth.peak_hour, 20);
    assert_eq!(truth.peak_weekday, "Saturday");
    // A November window knows nothing of December.
    assert_eq!(truth.peak_month, "November");
    assert_eq!(truth.events_by_month[11].expected, 0.0);
    assert_eq!(truth.most_abandoned_category, "electronics");
    let rate = truth.cart_abandonment_rate;
    assert!((0.6..=0.75).contains(&rate.expected), "{rate:?}");
    assert!(
        rate.sampling_error > 0.0 && rate.sampling_error < 0.02,
        "{rate:?}"
    );
    // The four states add up to the carts, in every replica and so in expectation.
    let states = truth.purchased_carts.expected
        + truth.abandoned_carts.expected
        + truth.emptied_carts.expected
        + truth.open_carts.expected;
    assert!((states - truth.carts.expected).abs() < 1e-6, "{truth:?}");
    let open = truth.open_carts.expected;
    assert!(
        open > 0.0 && open < 200.0,
        "only the last half hour is open: {open}"
    );
    let bands = &truth.item_abandonment_by_price_band;
    assert!(
        bands["500 and over"].expected > bands["under 25"].expected,
        "dearer items are abandoned more: {bands:?}"
    );
    // The same run, the same truth.
    assert_eq!(truth::compute(&run, 4), truth);
}
