//! The shopper simulation: a random walk over carts that stays consistent.
//!
//! Each step picks a customer. An empty cart can only be added to; a cart with items gets an
//! add, a remove of an item it holds, or a purchase that emits one `purchase_cart` per item and
//! empties the cart. Each cart is a session (`session_id`) that ends with its purchase. The
//! walk is a pure function of the seed, so tests can replay exactly what was published.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use cartflow_schemas::{Action, CartEvent, Customer, Product};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use uuid::{Builder, Uuid};

const USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

#[derive(Debug)]
struct Cart {
    session_id: String,
    items: Vec<usize>,
    user_agent: &'static str,
    ip: IpAddr,
}

/// An endless, deterministic stream of consistent cart events.
#[derive(Debug)]
pub struct Simulator {
    rng: StdRng,
    customers: Vec<Customer>,
    products: Vec<Product>,
    carts: HashMap<usize, Cart>,
    sessions: u64,
    pending: VecDeque<CartEvent>,
}

impl Simulator {
    /// # Panics
    /// When `customers` or `products` is empty.
    pub fn new(seed: u64, customers: Vec<Customer>, products: Vec<Product>) -> Self {
        assert!(
            !customers.is_empty() && !products.is_empty(),
            "nothing to simulate"
        );
        Simulator {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_ca27),
            customers,
            products,
            carts: HashMap::new(),
            sessions: 0,
            pending: VecDeque::new(),
        }
    }

    /// The next event, stamped `at`.
    pub fn next_event(&mut self, at: DateTime<Utc>) -> CartEvent {
        loop {
            if let Some(mut e) = self.pending.pop_front() {
                e.timestamp = at;
                return e;
            }
            self.step();
        }
    }

    fn step(&mut self) {
        let who = self.rng.random_range(0..self.customers.len());
        let roll: f64 = self.rng.random();
        let cart = match self.carts.remove(&who) {
            Some(cart) => cart,
            None => self.new_cart(who),
        };
        let mut cart = cart;
        if cart.items.is_empty() || roll < 0.5 {
            let item = self.rng.random_range(0..self.products.len());
            cart.items.push(item);
            self.emit(who, &cart, item, Action::AddToCart);
        } else if roll < 0.7 {
            let at = self.rng.random_range(0..cart.items.len());
            let item = cart.items.swap_remove(at);
            self.emit(who, &cart, item, Action::RemoveFromCart);
        } else {
            for item in std::mem::take(&mut cart.items) {
                self.emit(who, &cart, item, Action::PurchaseCart);
            }
            // The purchase ends the session; the next visit opens a new cart.
            return;
        }
        self.carts.insert(who, cart);
    }

    fn new_cart(&mut self, who: usize) -> Cart {
        self.sessions += 1;
        let octets: [u8; 2] = self.rng.random();
        Cart {
            session_id: format!("s{:08x}", self.sessions),
            items: Vec::new(),
            user_agent: USER_AGENTS[who % USER_AGENTS.len()],
            ip: IpAddr::V4(Ipv4Addr::new(198, 51, octets[0], octets[1])),
        }
    }

    fn emit(&mut self, who: usize, cart: &Cart, item: usize, action: Action) {
        let customer = &self.customers[who];
        let product = &self.products[item];
        let verb = match action {
            Action::AddToCart => "added to the cart",
            Action::RemoveFromCart => "removed from the cart",
            Action::PurchaseCart => "purchased",
        };
        let event_id: Uuid = Builder::from_random_bytes(self.rng.random()).into_uuid();
        self.pending.push_back(CartEvent {
            event_id,
            customer_id: customer.customer_id,
            product_id: product.product_id,
            product_title: product.title.clone(),
            product_price: product.price,
            product_image: product.image_url.clone(),
            action,
            description: format!("{} {verb}: {}", customer.name, product.title),
            timestamp: DateTime::UNIX_EPOCH,
            session_id: Some(cart.session_id.clone()),
            user_agent: Some(cart.user_agent.to_owned()),
            ip_address: Some(cart.ip),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::{catalogue, customers};

    fn sim(seed: u64) -> Simulator {
        let mut rng = StdRng::seed_from_u64(seed);
        let customers = customers::generate(&mut rng, 50, DateTime::UNIX_EPOCH);
        Simulator::new(seed, customers, catalogue::fallback())
    }

    #[test]
    fn same_seed_same_events() {
        let (mut a, mut b) = (sim(7), sim(7));
        for _ in 0..1_000 {
            assert_eq!(
                a.next_event(DateTime::UNIX_EPOCH),
                b.next_event(DateTime::UNIX_EPOCH)
            );
        }
        assert_ne!(
            sim(8).next_event(DateTime::UNIX_EPOCH),
            sim(7).next_event(DateTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn nobody_removes_or_buys_what_is_not_in_the_cart() {
        let mut s = sim(3);
        let mut carts: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut ids = HashSet::new();
        let mut purchased_session: HashMap<i64, String> = HashMap::new();
        for _ in 0..100_000 {
            let e = s.next_event(DateTime::UNIX_EPOCH);
            assert!(ids.insert(e.event_id), "duplicate event id");
            let cart = carts.entry(e.customer_id).or_default();
            match e.action {
                Action::AddToCart => cart.push(e.product_id),
                Action::RemoveFromCart | Action::PurchaseCart => {
                    let at = cart.iter().position(|p| *p == e.product_id);
                    assert!(at.is_some(), "{} of an item not in the cart", e.action);
                    cart.swap_remove(at.unwrap_or_default());
                }
            }
            if e.action == Action::PurchaseCart {
                purchased_session.insert(e.customer_id, e.session_id.clone().unwrap_or_default());
            } else if let Some(done) = purchased_session.get(&e.customer_id) {
                assert_ne!(
                    Some(done),
                    e.session_id.as_ref(),
                    "a purchased cart was reused"
                );
            }
        }
    }
}
