//! One shopping session, planned: which items go in and out of the cart, when, and whether it
//! ends in a purchase. Pure: the same random draws give the same plan.

use cartflow_schemas::{Action, Product};
use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::RngExt;

use crate::profile::{Profile, Tier};

/// One action of a plan, `offset_ms` after the session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub offset_ms: i64,
    pub product: usize,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub purchased: bool,
}

impl Plan {
    pub fn duration_ms(&self) -> i64 {
        self.steps.last().map_or(0, |s| s.offset_ms)
    }
}

/// The profile applied to a catalogue.
#[derive(Debug, Clone)]
pub struct Model {
    pub profile: Profile,
    pub products: Vec<Product>,
    /// Cumulative pick weights of `products`.
    product_cdf: Vec<f64>,
}

impl Model {
    /// # Panics
    /// When `products` is empty.
    pub fn new(profile: Profile, products: Vec<Product>) -> Self {
        assert!(!products.is_empty(), "a model needs products");
        let product_cdf = cumulative(
            products
                .iter()
                .map(|p| profile.category_weight(&p.category)),
        );
        Model {
            profile,
            products,
            product_cdf,
        }
    }

    /// Relative traffic at `t`: hour of day × day of week × month.
    pub fn traffic_weight(&self, t: DateTime<Utc>) -> f64 {
        let tr = &self.profile.traffic;
        tr.hour_weights[t.hour() as usize]
            * tr.weekday_weights[t.weekday().num_days_from_monday() as usize]
            * tr.month_weights[t.month0() as usize]
    }

    /// The largest value [`Model::traffic_weight`] can take.
    pub fn max_traffic_weight(&self) -> f64 {
        let tr = &self.profile.traffic;
        let max = |w: &[f64]| w.iter().copied().fold(0.0, f64::max);
        max(&tr.hour_weights) * max(&tr.weekday_weights) * max(&tr.month_weights)
    }

    /// Plans a session of a shopper in `tier` and age group `age_group`, starting at `start`.
    pub fn plan<R: RngExt>(
        &self,
        rng: &mut R,
        tier: &Tier,
        age_group: usize,
        start: DateTime<Utc>,
    ) -> Plan {
        let s = &self.profile.session;
        let mean_extra = (s.mean_adds * tier.basket - 1.0).max(0.0);
        let q = mean_extra / (1.0 + mean_extra);
        let mut adds = 1;
        while adds < s.max_adds && rng.random::<f64>() < q {
            adds += 1;
        }
        let mut steps = Vec::with_capacity(adds as usize * 2 + 2);
        let mut cart: Vec<usize> = Vec::with_capacity(adds as usize);
        let mut t = 0i64;
        for i in 0..adds {
            if i > 0 {
                t += self.gap(rng);
            }
            let product = pick(rng, &self.product_cdf);
            cart.push(product);
            steps.push(Step {
                offset_ms: t,
                product,
                action: Action::AddToCart,
            });
            let price = self.products[product].price.cents() as f64 / 100.0;
            let remove = (s.remove_base + s.remove_per_100 * price / 100.0).min(0.9);
            if rng.random::<f64>() < remove {
                t += self.gap(rng);
                cart.pop();
                steps.push(Step {
                    offset_ms: t,
                    product,
                    action: Action::RemoveFromCart,
                });
            }
        }
        if cart.is_empty() {
            return Plan {
                steps,
                purchased: false,
            };
        }
        let buy = sigmoid(self.purchase_logit(&cart, tier, age_group, start));
        if rng.random::<f64>() >= buy {
            return Plan {
                steps,
                purchased: false,
            };
        }
        t += self.gap(rng);
        // One purchase_cart per item, a millisecond apart, as the original events table has.
        for (i, product) in cart.into_iter().enumerate() {
            steps.push(Step {
                offset_ms: t + i as i64,
                product,
                action: Action::PurchaseCart,
            });
        }
        Plan {
            steps,
            purchased: true,
        }
    }

    /// The logit of buying `cart`: base + cart value + mean category + age + tier + time.
    pub fn purchase_logit(
        &self,
        cart: &[usize],
        tier: &Tier,
        age_group: usize,
        start: DateTime<Utc>,
    ) -> f64 {
        let c = &self.profile.conversion;
        let value: f64 = cart
            .iter()
            .map(|&p| self.products[p].price.cents() as f64 / 100.0)
            .sum();
        let category: f64 = cart
            .iter()
            .map(|&p| self.profile.category_effect(&self.products[p].category))
            .sum::<f64>()
            / cart.len() as f64;
        let mut logit = c.base
            + c.per_100_of_cart * value / 100.0
            + category
            + self.profile.age_effect(age_group)
            + tier.conversion;
        if c.evening_hours.contains(&start.hour()) {
            logit += c.evening;
        }
        if start.weekday().num_days_from_monday() >= 5 {
            logit += c.weekend;
        }
        if c.holiday_months.contains(&start.month()) {
            logit += c.holiday;
        }
        logit
    }

    fn gap<R: RngExt>(&self, rng: &mut R) -> i64 {
        exponential(rng, self.profile.session.mean_gap_seconds * 1000.0).max(1.0) as i64
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// An exponentially distributed value with the given mean.
pub fn exponential<R: RngExt>(rng: &mut R, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// Running sums of `weights`.
pub fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights
        .scan(0.0, |sum, w| {
            *sum += w.max(0.0);
            Some(*sum)
        })
        .collect()
}

/// An index drawn in proportion to the weights behind `cdf`.
pub fn pick<R: RngExt>(rng: &mut R, cdf: &[f64]) -> usize {
    let total = cdf.last().copied().unwrap_or(0.0);
    if total <= 0.0 {
        return rng.random_range(0..cdf.len().max(1));
    }
    let x = rng.random::<f64>() * total;
    cdf.partition_point(|c| *c <= x).min(cdf.len() - 1)
}
