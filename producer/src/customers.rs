//! Simulated customers, made with `fake`.

use cartflow_schemas::Customer;
use chrono::{DateTime, Duration, Utc};
use fake::Fake;
use fake::faker::name::en::{FirstName, LastName};
use rand::RngExt;

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

/// `count` customers with ids 1..=count. Emails embed the id, so they are unique at any count.
pub fn generate<R: RngExt>(rng: &mut R, count: u32, now: DateTime<Utc>) -> Vec<Customer> {
    (1..=i64::from(count))
        .map(|id| {
            let first: String = FirstName().fake_with_rng(rng);
            let last: String = LastName().fake_with_rng(rng);
            let email = format!("{}.{}.{id}@example.com", slug(&first), slug(&last));
            Customer {
                customer_id: id,
                name: format!("{first} {last}"),
                age: age(rng),
                email,
                created_at: now - Duration::minutes(rng.random_range(0..2 * 365 * 24 * 60)),
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

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn customers_are_valid_and_emails_unique_at_a_million() {
        let mut rng = StdRng::seed_from_u64(1);
        let customers = generate(&mut rng, 1_000_000, Utc::now());
        let emails: HashSet<_> = customers.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails.len(), customers.len());
        assert!(customers.iter().all(|c| c.validate().is_ok()));
        let adults = customers.iter().filter(|c| c.age >= 18).count();
        assert!(adults * 10 > customers.len() * 9, "adult-heavy: {adults}");
    }
}
