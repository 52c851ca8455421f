//! The shoppers behind the customers: each customer's value tier, age group, device and
//! address, and how often each visits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cartflow_schemas::Customer;
use rand::RngExt;

use crate::customers::{Stream, customer_rng};
use crate::profile::{Profile, age_group};
use crate::session::{cumulative, pick};

const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
];

#[derive(Debug, Clone)]
pub struct Shopper {
    pub customer: Customer,
    pub tier: usize,
    pub age_group: usize,
    pub user_agent: &'static str,
    /// Addresses from the documentation ranges (RFC 5737, RFC 3849): realistic, never real.
    pub ip: IpAddr,
}

#[derive(Debug, Clone)]
pub struct Population {
    pub shoppers: Vec<Shopper>,
    visit_cdf: Vec<f64>,
}

impl Population {
    /// # Panics
    /// When `customers` is empty.
    pub fn new(population_seed: u64, customers: Vec<Customer>, profile: &Profile) -> Self {
        assert!(!customers.is_empty(), "a population needs customers");
        let tier_cdf = cumulative(profile.tiers.iter().map(|t| t.share));
        let shoppers: Vec<Shopper> = customers
            .into_iter()
            .map(|customer| {
                // The shopper behind a customer is as stable as the customer.
                let rng = &mut customer_rng(population_seed, customer.customer_id, Stream::Shopper);
                let ip = if rng.random_bool(0.2) {
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0,
                        0,
                        0,
                        0,
                        rng.random(),
                        rng.random(),
                    ))
                } else {
                    let net = [(192, 0, 2), (198, 51, 100), (203, 0, 113)][rng.random_range(0..3)];
                    IpAddr::V4(Ipv4Addr::new(net.0, net.1, net.2, rng.random_range(1..255)))
                };
                Shopper {
                    tier: pick(rng, &tier_cdf),
                    age_group: age_group(customer.age),
                    user_agent: USER_AGENTS[rng.random_range(0..USER_AGENTS.len())],
                    ip,
                    customer,
                }
            })
            .collect();
        let visit_cdf = cumulative(shoppers.iter().map(|s| profile.tiers[s.tier].visits));
        Population {
            shoppers,
            visit_cdf,
        }
    }

    /// A shopper drawn in proportion to how often their tier visits.
    pub fn pick<R: RngExt>(&self, rng: &mut R) -> usize {
        pick(rng, &self.visit_cdf)
    }
}
