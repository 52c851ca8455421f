//! The shopper simulation as a stream of cart events in event-time order.
//!
//! Sessions start as a Poisson process whose rate follows the profile's hour, weekday and month
//! weights; each is planned whole ([`crate::session`]) and its events wait in a queue ordered
//! by time. A shopper has one session at a time, so every cart is consistent: nobody removes
//! or buys what is not in it, and a purchase empties it. The stream is a pure function of the
//! seed and the start time, event ids included.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use cartflow_schemas::{Action, CartEvent, Customer, Product};
use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use uuid::{Builder, Uuid};

use crate::population::Population;
use crate::profile::Profile;
use crate::session::{Model, Plan, exponential};

/// An endless, deterministic stream of consistent cart events.
#[derive(Debug)]
pub struct Simulator {
    rng: StdRng,
    model: Model,
    population: Population,
    /// Per shopper: when their current session ends (ms since the epoch).
    busy_until: Vec<i64>,
    queue: BinaryHeap<Pending>,
    next_start_ms: f64,
    seq: u64,
    sessions: u64,
    /// The sessions planned so far, when asked to keep them (`--print-truth`).
    recorded: Option<Vec<Session>>,
}

/// A session as planned: whose, when, and what it does.
#[derive(Debug, Clone)]
pub struct Session {
    pub start_ms: i64,
    /// Index into [`Population::shoppers`].
    pub shopper: usize,
    pub plan: Plan,
}

#[derive(Debug)]
struct Pending {
    at_ms: i64,
    seq: u64,
    event: CartEvent,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: the heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.seq).cmp(&(self.at_ms, self.seq))
    }
}

impl Simulator {
    /// A simulation of `customers` shopping from `products`, starting at `start`.
    ///
    /// # Panics
    /// When `customers` or `products` is empty.
    pub fn new(
        seed: u64,
        population_seed: u64,
        profile: Profile,
        customers: Vec<Customer>,
        products: Vec<Product>,
        start: DateTime<Utc>,
    ) -> Self {
        let rng = StdRng::seed_from_u64(seed ^ 0x5eed_ca27);
        let model = Model::new(profile, products);
        let population = Population::new(population_seed, customers, &model.profile);
        let busy_until = vec![i64::MIN; population.shoppers.len()];
        let mut sim = Simulator {
            rng,
            model,
            population,
            busy_until,
            queue: BinaryHeap::new(),
            next_start_ms: start.timestamp_millis() as f64,
            seq: 0,
            sessions: 0,
            recorded: None,
        };
        sim.advance_start();
        sim
    }

    /// Sessions started so far.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// Keeps every session it plans from now on, for [`Simulator::take_sessions`].
    pub fn record_sessions(&mut self) {
        self.recorded.get_or_insert_with(Vec::new);
    }

    /// The sessions planned since the last call (with [`Simulator::record_sessions`]).
    pub fn take_sessions(&mut self) -> Vec<Session> {
        self.recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn population(&self) -> &Population {
        &self.population
    }

    /// The next event in event-time order.
    pub fn next_event(&mut self) -> CartEvent {
        loop {
            if let Some(top) = self.queue.peek()
                && (top.at_ms as f64) <= self.next_start_ms
                && let Some(p) = self.queue.pop()
            {
                return p.event;
            }
            self.start_session();
        }
    }

    /// Draws the time of the next session start after the current one.
    fn advance_start(&mut self) {
        loop {
            let now = self.time(self.next_start_ms);
            let rate_per_ms = self.model.profile.traffic.sessions_per_hour
                * self.model.traffic_weight(now)
                / 3_600_000.0;
            let hour_end = (now.duration_trunc(Duration::hours(1)).unwrap_or(now)
                + Duration::hours(1))
            .timestamp_millis() as f64;
            if rate_per_ms <= 0.0 {
                self.next_start_ms = hour_end;
                continue;
            }
            let next = self.next_start_ms + exponential(&mut self.rng, 1.0 / rate_per_ms);
            // The rate is constant within an hour; past its end, draw again at the new rate
            // (memorylessness makes this exact).
            if next > hour_end {
                self.next_start_ms = hour_end;
                continue;
            }
            self.next_start_ms = next;
            return;
        }
    }

    fn time(&self, ms: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
    }

    fn start_session(&mut self) {
        let start_ms = self.next_start_ms as i64;
        self.advance_start();
        // A shopper has one cart at a time; a few draws find a free one.
        let Some(who) = (0..8)
            .map(|_| self.population.pick(&mut self.rng))
            .find(|&w| self.busy_until[w] < start_ms)
        else {
            return;
        };
        let start = self.time(start_ms as f64);
        let shopper = &self.population.shoppers[who];
        let tier = &self.model.profile.tiers[shopper.tier];
        let plan = self
            .model
            .plan(&mut self.rng, tier, shopper.age_group, start);
        self.busy_until[who] = start_ms + plan.duration_ms();
        self.sessions += 1;
        if let Some(recorded) = &mut self.recorded {
            recorded.push(Session {
                start_ms,
                shopper: who,
                plan: plan.clone(),
            });
        }
        let session_id = new_uuid(&mut self.rng).to_string();
        for step in plan.steps {
            let at_ms = start_ms + step.offset_ms;
            let shopper = &self.population.shoppers[who];
            let product = &self.model.products[step.product];
            let verb = match step.action {
                Action::AddToCart => "added to the cart",
                Action::RemoveFromCart => "removed from the cart",
                Action::PurchaseCart => "purchased",
            };
            let event = CartEvent {
                event_id: new_uuid(&mut self.rng),
                customer_id: shopper.customer.customer_id,
                product_id: product.product_id,
                product_title: product.title.clone(),
                product_price: product.price,
                product_image: product.image_url.clone(),
                action: step.action,
                description: format!("{} {verb}: {}", shopper.customer.name, product.title),
                timestamp: self.time(at_ms as f64),
                session_id: Some(session_id.clone()),
                user_agent: Some(shopper.user_agent.to_owned()),
                ip_address: Some(shopper.ip),
            };
            self.seq += 1;
            self.queue.push(Pending {
                at_ms,
                seq: self.seq,
                event,
            });
        }
    }
}

/// A version-4 UUID whose random bits come from the seeded generator.
fn new_uuid<R: RngExt>(rng: &mut R) -> Uuid {
    Builder::from_random_bytes(rng.random()).into_uuid()
}

/// The world's mean cart events per second of simulated time over `span` after `from`:
/// measured by simulating it (with its own seed), so every rule of the simulation counts.
pub fn events_per_second(
    population_seed: u64,
    profile: &Profile,
    customers: &[Customer],
    products: &[Product],
    from: DateTime<Utc>,
    span: Duration,
) -> f64 {
    let mut sim = Simulator::new(
        0x0072_6174_6500,
        population_seed,
        profile.clone(),
        customers.to_vec(),
        products.to_vec(),
        from,
    );
    let until = from + span;
    let mut events = 0u64;
    while sim.next_event().timestamp <= until {
        events += 1;
    }
    events as f64 / span.num_seconds().max(1) as f64
}
