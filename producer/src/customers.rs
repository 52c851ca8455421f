//! Simulated customers, made with `fake`. A customer is a function of the population seed and
//! its id alone: every producer run with the same `--population-seed` publishes the same
//! people, whatever its event seed or `--customers`, so a second run adds actions and never
//! renames history.

use cartflow_schemas::Customer;
use chrono::{DateTime, Duration, TimeZone, Utc};
use fake::Fake;
use fake::faker::name::en::{FirstName, LastName};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Age bands and their shares of shoppers: adult-heavy, few minors, a long tail of seniors.
const AGE_BANDS: [(i32, i32, f64); 7] = [
    (13, 17, 0.04),
    (18, 24, 0.16),
    (25, 34, 0.26),
    (35, 44, 0.21),
    (45, 54, 0.15),
    (55, 64, 0.11),
    (65, 90, 0.07),
];

/// Which of a customer's random streams: the record, or the shopper behind it
/// (`crate::population`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Customer = 0,
    Shopper = 1,
}

/// The random stream `stream` of customer `id` in the population `population_seed`.
pub fn customer_rng(population_seed: u64, id: i64, stream: Stream) -> StdRng {
    let key = (id as u64).wrapping_mul(2).wrapping_add(stream as u64);
    StdRng::seed_from_u64(splitmix64(population_seed ^ splitmix64(key)))
}

/// SplitMix64's finaliser: neighbouring ids give unrelated seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sign-up times are drawn in the two years before this instant, so they too are the same in
/// every run.
fn opened() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// `count` customers with ids 1..=count. Emails embed the id, so they are unique at any count.
pub fn generate(population_seed: u64, count: u32) -> Vec<Customer> {
    (1..=i64::from(count))
        .map(|id| {
            let rng = &mut customer_rng(population_seed, id, Stream::Customer);
            let first: String = FirstName().fake_with_rng(rng);
            let last: String = LastName().fake_with_rng(rng);
            let email = format!("{}.{}.{id}@example.com", slug(&first), slug(&last));
            Customer {
                customer_id: id,
                name: format!("{first} {last}"),
                age: age(rng),
                email,
                created_at: opened() - Duration::minutes(rng.random_range(0..2 * 365 * 24 * 60)),
            }
        })
        .collect()
}

fn age<R: RngExt>(rng: &mut R) -> i32 {
    let mut pick: f64 = rng.random();
    for (lo, hi, share) in AGE_BANDS {
        if pick < share {
            return rng.random_range(lo..=hi);
        }
        pick -= share;
    }
    rng.random_range(25..=34)
}

fn slug(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn customers_are_valid_and_emails_unique_at_a_million() {
        let customers = generate(1, 1_000_000);
        let emails: HashSet<_> = customers.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails.len(), customers.len());
        assert!(customers.iter().all(|c| c.validate().is_ok()));
        let adults = customers.iter().filter(|c| c.age >= 18).count();
        assert!(adults * 10 > customers.len() * 9, "adult-heavy: {adults}");
    }

    #[test]
    fn a_customer_depends_on_the_population_seed_and_its_id_only() {
        let few = generate(7, 10);
        let many = generate(7, 1_000);
        assert_eq!(
            few[..],
            many[..10],
            "more customers leave the first ones as they were"
        );
        assert_eq!(generate(7, 10), few, "the same seed, the same people");
        let other = generate(8, 10);
        assert!(
            few.iter()
                .zip(&other)
                .all(|(a, b)| a.name != b.name || a.age != b.age),
            "another population seed, other people"
        );
    }
}
