//! What a set of events adds to the aggregates, computed in memory.
//!
//! Every aggregate is a sum, a minimum or a maximum over events, so the order events arrive
//! in does not matter: a chunk's [`Delta`] added to the stored rows gives what one pass over
//! all events would. Carts are the exception that proves the rule: their outcome (purchased,
//! emptied, still holding items) depends on all of a cart's events, so a cart's stored state
//! is read, merged and its contribution to `cart_hourly` moved from the old outcome to the new.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::cents::Cents;

/// The delta's maps: foldhash instead of std's SipHash. A rebuild's read is bound by this
/// summing (one core busy while PostgreSQL sends rows at 40% of another); the faster hash took
/// a 2,000,000-event rebuild from 7.0-7.4 s to 6.3-6.7 s. Seeded per process, so keys from the
/// log (cart keys) cannot be chosen to collide.
pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One row of the raw log, as the projector needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent<'a> {
    pub customer_id: i64,
    pub product_id: i64,
    pub price: Cents,
    pub action: Action,
    pub timestamp: DateTime<Utc>,
    /// Borrowed from the row it was read from: a rebuild reads millions, and most belong to
    /// a cart already in the delta, so the key is copied only for a cart's first event.
    pub session_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    Purchase,
}

impl Action {
    /// The `events.action` text; the table's CHECK admits nothing else.
    pub fn from_db(s: &str) -> Option<Action> {
        match s {
            "add_to_cart" => Some(Action::Add),
            "remove_from_cart" => Some(Action::Remove),
            "purchase_cart" => Some(Action::Purchase),
            _ => None,
        }
    }
}

/// Item counters: the columns every `*_stats` table and `carts` share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: i64,
    pub adds: i64,
    pub removes: i64,
    pub purchases: i64,
    pub added_value: Cents,
    pub removed_value: Cents,
    pub revenue: Cents,
}

impl Counters {
    pub fn count(&mut self, action: Action, price: Cents) {
        self.events += 1;
        match action {
            Action::Add => {
                self.adds += 1;
                self.added_value += price;
            }
            Action::Remove => {
                self.removes += 1;
                self.removed_value += price;
            }
            Action::Purchase => {
                self.purchases += 1;
                self.revenue += price;
            }
        }
    }

    pub fn merge(&mut self, o: &Counters) {
        self.events += o.events;
        self.adds += o.adds;
        self.removes += o.removes;
        self.purchases += o.purchases;
        self.added_value += o.added_value;
        self.removed_value += o.removed_value;
        self.revenue += o.revenue;
    }
}

/// A customer's counters plus what their carts did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerDelta {
    pub items: Counters,
    pub carts: i64,
    pub purchased_carts: i64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_purchase_at: Option<DateTime<Utc>>,
}

impl CustomerDelta {
    /// Adds `o`, the same customer's counts from other events.
    fn merge(&mut self, o: &CustomerDelta) {
        self.items.merge(&o.items);
        self.carts += o.carts;
        self.purchased_carts += o.purchased_carts;
        self.first_seen = match (self.first_seen, o.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_seen = self.last_seen.max(o.last_seen);
        self.last_purchase_at = self.last_purchase_at.max(o.last_purchase_at);
    }
}

/// Everything known about one cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub customer_id: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub items: Counters,
    /// Nothing was stored for it before this chunk (it stays so through
    /// [`Delta::settle_carts`] only when nothing was).
    pub new: bool,
}

impl Cart {
    /// Adds `o`, the same cart's other events (new only if both were).
    fn merge(&mut self, o: &Cart) {
        self.customer_id = self.customer_id.min(o.customer_id);
        self.first_at = self.first_at.min(o.first_at);
        self.last_at = self.last_at.max(o.last_at);
        self.items.merge(&o.items);
        self.new &= o.new;
    }

    pub fn purchased(&self) -> bool {
        self.items.purchases > 0
    }

    /// Its part of `cart_hourly` and `cart_minutely`, under the time it started.
    fn outcome(&self) -> CartOutcomes {
        let i = &self.items;
        let mut o = CartOutcomes {
            carts: 1,
            ..CartOutcomes::default()
        };
        if self.purchased() {
            o.purchased_carts = 1;
            o.purchased_value = i.revenue;
        } else if i.adds > i.removes {
            o.unpurchased_carts = 1;
            o.unpurchased_items = i.adds - i.removes;
            o.unpurchased_value = i.added_value - i.removed_value;
        } else {
            o.emptied_carts = 1;
        }
        o
    }
}

/// The columns of `cart_hourly`; signed, because a delta takes an old outcome away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CartOutcomes {
    pub carts: i64,
    pub purchased_carts: i64,
    pub purchased_value: Cents,
    pub unpurchased_carts: i64,
    pub unpurchased_items: i64,
    pub unpurchased_value: Cents,
    pub emptied_carts: i64,
}

impl CartOutcomes {
    fn add(&mut self, o: &CartOutcomes, sign: i64) {
        self.carts += sign * o.carts;
        self.purchased_carts += sign * o.purchased_carts;
        self.purchased_value += o.purchased_value * sign;
        self.unpurchased_carts += sign * o.unpurchased_carts;
        self.unpurchased_items += sign * o.unpurchased_items;
        self.unpurchased_value += o.unpurchased_value * sign;
        self.emptied_carts += sign * o.emptied_carts;
    }

    pub fn is_zero(&self) -> bool {
        *self == CartOutcomes::default()
    }
}

/// The price bands' lower bounds in currency units, as the producer's truth names them.
pub const PRICE_BAND_FLOORS: [i32; 4] = [0, 25, 100, 500];

pub fn price_band(price: Cents) -> i32 {
    PRICE_BAND_FLOORS
        .iter()
        .rev()
        .copied()
        .find(|floor| price >= Cents::from_units(i64::from(*floor)))
        .unwrap_or(0)
}

/// The hour (UTC) `t` falls in.
pub fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    floor(t, 3600)
}

/// The minute `t` falls in.
pub fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    floor(t, 60)
}

/// `t` rounded down to a whole number of `seconds` since the epoch, as PostgreSQL's
/// `date_trunc` does in UTC. In whole seconds rather than with chrono's `duration_trunc`:
/// every event is truncated twice, and that was 5% of a rebuild's time (perf).
fn floor(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(seconds), 0).unwrap_or(t)
}

/// The cart an event belongs to: its session, or for v1 events (which have none) the
/// customer's UTC day.
pub fn cart_key<'a>(e: &LogEvent<'a>) -> Cow<'a, str> {
    match e.session_id {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(format!(
            "customer {} on {}",
            e.customer_id,
            e.timestamp.date_naive()
        )),
    }
}

/// Makes the carts of several parts of one log (a rebuild's readers') disjoint, as if one
/// pass had read them: a cart in more than one part is merged into the first that has it and
/// left out of the others. Only the carts that straddle a cut are found in two parts.
pub fn disjoint_carts(parts: &mut [Map<String, Cart>]) {
    for i in 1..parts.len() {
        let (earlier, rest) = parts.split_at_mut(i);
        rest[0].retain(
            |key, cart| match earlier.iter_mut().find_map(|part| part.get_mut(key)) {
                Some(mine) => {
                    mine.merge(cart);
                    false
                }
                None => true,
            },
        );
    }
}

/// A bucket of time, a product and a price band: the key of `item_hourly` and `item_minutely`.
pub type ItemKey = (DateTime<Utc>, i64, i32);

/// A chunk of the log, summed. Carts hold only this chunk's events until
/// [`Delta::settle_carts`] merges them with what is stored.
#[derive(Debug, Default)]
pub struct Delta {
    pub events: i64,
    pub watermark: Option<DateTime<Utc>>,
    /// The latest event time of the log beyond this chunk, when the step looked: minute rows
    /// older than `minute_retention` before it would be dropped by a later step, so none are
    /// written (a catch-up over days of backlog writes as many minute rows as events otherwise).
    pub log_end: Option<DateTime<Utc>>,
    /// When set (a rebuild's pass over the whole log), minute buckets older than this before
    /// the watermark are not kept: the store would drop them, and over a long log they
    /// outnumber everything else in memory.
    pub minute_retention: Option<TimeDelta>,
    pub products: Map<i64, Counters>,
    pub hours: Map<DateTime<Utc>, Counters>,
    /// The timeline's recent buckets (the store keeps only `minute_retention` of them).
    pub minutes: Map<DateTime<Utc>, Counters>,
    pub price_bands: Map<i32, Counters>,
    /// Item counters by hour (all time) and by minute (recent), product and band: what a time
    /// range's products, categories and bands are summed from.
    pub item_hours: Map<ItemKey, Counters>,
    pub item_minutes: Map<ItemKey, Counters>,
    pub customers: Map<i64, CustomerDelta>,
    pub carts: Map<String, Cart>,
    pub cart_hours: Map<DateTime<Utc>, CartOutcomes>,
    pub cart_minutes: Map<DateTime<Utc>, CartOutcomes>,
}

impl Delta {
    pub fn add(&mut self, e: &LogEvent) {
        self.events += 1;
        self.watermark = self.watermark.max(Some(e.timestamp));
        let count = |c: &mut Counters| c.count(e.action, e.price);
        count(self.products.entry(e.product_id).or_default());
        let (h, m, band) = (hour(e.timestamp), minute(e.timestamp), price_band(e.price));
        count(self.hours.entry(h).or_default());
        count(self.price_bands.entry(band).or_default());
        count(self.item_hours.entry((h, e.product_id, band)).or_default());
        let cutoff = self.minute_cutoff();
        if cutoff.is_none_or(|c| m >= c) {
            count(self.minutes.entry(m).or_default());
            count(
                self.item_minutes
                    .entry((m, e.product_id, band))
                    .or_default(),
            );
        }
        if let Some(c) = cutoff.filter(|_| self.events % 65_536 == 0) {
            self.drop_minutes_before(c);
        }
        let customer = self.customers.entry(e.customer_id).or_default();
        count(&mut customer.items);
        let t = Some(e.timestamp);
        customer.first_seen = Some(
            customer
                .first_seen
                .map_or(e.timestamp, |f| f.min(e.timestamp)),
        );
        customer.last_seen = customer.last_seen.max(t);
        if e.action == Action::Purchase {
            customer.last_purchase_at = customer.last_purchase_at.max(t);
        }
        // A cart belongs to the least customer id among its events (one, for a real session):
        // defined so, it does not depend on the order the log is read in.
        let add_to = |cart: &mut Cart| {
            cart.customer_id = cart.customer_id.min(e.customer_id);
            cart.first_at = cart.first_at.min(e.timestamp);
            cart.last_at = cart.last_at.max(e.timestamp);
            count(&mut cart.items);
        };
        let key = cart_key(e);
        if let Some(cart) = self.carts.get_mut(&*key) {
            add_to(cart);
        } else {
            let mut cart = Cart {
                customer_id: e.customer_id,
                first_at: e.timestamp,
                last_at: e.timestamp,
                items: Counters::default(),
                new: true,
            };
            add_to(&mut cart);
            self.carts.insert(key.into_owned(), cart);
        }
    }

    /// Minute buckets before this are not kept: `minute_retention` before the watermark, when
    /// a retention is set.
    fn minute_cutoff(&self) -> Option<DateTime<Utc>> {
        self.minute_retention
            .zip(self.watermark)
            .map(|(r, w)| w - r)
    }

    fn drop_minutes_before(&mut self, cutoff: DateTime<Utc>) {
        self.minutes.retain(|m, _| *m >= cutoff);
        self.item_minutes.retain(|(m, _, _), _| *m >= cutoff);
    }

    /// Adds `other`, a delta of other events of the same log, as if one pass had read both:
    /// every aggregate is a sum, a minimum or a maximum, and carts seen by both are merged.
    /// For carts not yet settled (a rebuild's readers merge before [`Delta::settle_carts`]).
    pub fn absorb(&mut self, other: Delta) {
        fn counters<K: std::hash::Hash + Eq>(into: &mut Map<K, Counters>, from: Map<K, Counters>) {
            into.reserve(from.len());
            for (k, c) in from {
                into.entry(k).or_default().merge(&c);
            }
        }
        self.events += other.events;
        self.watermark = self.watermark.max(other.watermark);
        counters(&mut self.products, other.products);
        counters(&mut self.hours, other.hours);
        counters(&mut self.minutes, other.minutes);
        counters(&mut self.price_bands, other.price_bands);
        counters(&mut self.item_hours, other.item_hours);
        counters(&mut self.item_minutes, other.item_minutes);
        if let Some(c) = self.minute_cutoff() {
            self.drop_minutes_before(c);
        }
        for (id, c) in other.customers {
            self.customers.entry(id).or_default().merge(&c);
        }
        let carts = &mut self.carts;
        carts.reserve(other.carts.len());
        for (key, cart) in other.carts {
            match carts.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().merge(&cart),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(cart);
                }
            }
        }
        for (h, o) in other.cart_hours {
            self.cart_hours.entry(h).or_default().add(&o, 1);
        }
        for (m, o) in other.cart_minutes {
            self.cart_minutes.entry(m).or_default().add(&o, 1);
        }
    }

    /// Merges this chunk's carts with their stored states (`stored`, by key; absent for new
    /// carts) and turns the change of each cart's outcome into `cart_hours` and customer cart
    /// counts. Afterwards `carts` holds the carts' new full states, ready to be written.
    pub fn settle_carts(&mut self, mut stored: Map<String, Cart>) {
        if stored.is_empty() {
            // No key is hashed for nothing.
            let carts = std::mem::take(&mut self.carts);
            self.count_new_carts(&carts);
            self.carts = carts;
            return;
        }
        // As for the event minutes: over a rebuild's whole log, the minutes the store would
        // drop outnumber the rest (841,876 of a 10-million-event log's, against 2,448 kept).
        let cutoff = self.minute_cutoff();
        let (hours, minutes) = (&mut self.cart_hours, &mut self.cart_minutes);
        let customers = &mut self.customers;
        for (key, cart) in &mut self.carts {
            // The cart leaves its old outcome and customer, and joins its (possibly new) ones.
            if let Some(mut merged) = stored.remove(key) {
                Self::count_cart(hours, minutes, customers, cutoff, &merged, -1);
                merged.merge(cart);
                *cart = merged;
            }
            Self::count_cart(hours, minutes, customers, cutoff, cart, 1);
        }
        self.cart_hours.retain(|_, o| !o.is_zero());
        self.cart_minutes.retain(|_, o| !o.is_zero());
    }

    /// [`Delta::settle_carts`] for `carts` that have no stored state (all of a rebuild's),
    /// held outside the delta: their outcomes and their customers' cart counts are counted,
    /// and they are left as they are, so a rebuild copies them out meanwhile.
    pub fn count_new_carts(&mut self, carts: &Map<String, Cart>) {
        let cutoff = self.minute_cutoff();
        let (hours, minutes) = (&mut self.cart_hours, &mut self.cart_minutes);
        for cart in carts.values() {
            Self::count_cart(hours, minutes, &mut self.customers, cutoff, cart, 1);
        }
    }

    /// Adds (`sign` 1) or takes away (-1) `cart`'s outcome under the hour and the minute it
    /// started in (the minute unless it lies before `cutoff`), and the cart from its
    /// customer's cart counts.
    fn count_cart(
        hours: &mut Map<DateTime<Utc>, CartOutcomes>,
        minutes: &mut Map<DateTime<Utc>, CartOutcomes>,
        customers: &mut Map<i64, CustomerDelta>,
        cutoff: Option<DateTime<Utc>>,
        cart: &Cart,
        sign: i64,
    ) {
        let customer = customers.entry(cart.customer_id).or_default();
        customer.carts += sign;
        customer.purchased_carts += sign * i64::from(cart.purchased());
        let o = cart.outcome();
        hours.entry(hour(cart.first_at)).or_default().add(&o, sign);
        let m = minute(cart.first_at);
        if cutoff.is_none_or(|c| m >= c) {
            minutes.entry(m).or_default().add(&o, sign);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn hours_and_minutes_are_rounded_down_as_date_trunc_does() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let t = at("2026-11-01T10:37:59.999999+00:00");
        assert_eq!(hour(t), at("2026-11-01T10:00:00Z"));
        assert_eq!(minute(t), at("2026-11-01T10:37:00Z"));
        // Before the epoch, down is still towards the past.
        let t = at("1969-12-31T23:59:30.5+00:00");
        assert_eq!(hour(t), at("1969-12-31T23:00:00Z"));
        assert_eq!(minute(t), at("1969-12-31T23:59:00Z"));
        let whole = at("2026-11-01T10:00:00Z");
        assert_eq!((hour(whole), minute(whole)), (whole, whole));
    }

    fn event(session: &str, action: Action, price: i64, minute: u32) -> LogEvent<'_> {
        LogEvent {
            customer_id: 7,
            product_id: 1,
            price: Cents::from_units(price),
            action,
            timestamp: Utc.with_ymd_and_hms(2026, 11, 1, 10, minute, 0).unwrap(),
            session_id: Some(session),
        }
    }

    fn one_pass(events: &[LogEvent]) -> Delta {
        let mut d = Delta::default();
        events.iter().for_each(|e| d.add(e));
        d.settle_carts(Map::default());
        d
    }

    #[test]
    fn a_cart_bought_in_a_later_chunk_moves_from_unpurchased_to_purchased() {
        let mut first = one_pass(&[event("s", Action::Add, 30, 0)]);
        let h = hour(first.watermark.unwrap());
        assert_eq!(first.cart_hours[&h].unpurchased_carts, 1);
        let stored: Map<_, _> = first.carts.drain().collect();

        assert!(stored["s"].new, "a cart first seen in a chunk is new");
        let stored = stored
            .into_iter()
            .map(|(k, c)| (k, Cart { new: false, ..c }))
            .collect();
        let mut second = Delta::default();
        second.add(&event("s", Action::Purchase, 30, 5));
        second.settle_carts(stored);
        assert!(!second.carts["s"].new, "a stored cart is not new");
        let o = &second.cart_hours[&h];
        assert_eq!(
            (o.carts, o.unpurchased_carts, o.purchased_carts),
            (0, -1, 1)
        );
        assert_eq!(second.customers[&7].purchased_carts, 1);
        assert_eq!(
            second.customers[&7].carts, 0,
            "the cart was counted when it was created"
        );
    }

    #[test]
    fn a_late_earlier_event_moves_the_cart_to_its_start_hour() {
        let stored: Map<_, _> = one_pass(&[event("s", Action::Add, 30, 50)])
            .carts
            .drain()
            .collect();
        let mut late = Delta::default();
        let mut e = event("s", Action::Add, 30, 0);
        e.timestamp -= TimeDelta::hours(1);
        late.add(&e);
        late.settle_carts(stored);
        assert_eq!(late.cart_hours.len(), 2);
        assert!(late.cart_hours.values().any(|o| o.carts == -1));
        assert!(late.cart_hours.values().any(|o| o.carts == 1));
    }

    #[test]
    fn a_cart_belongs_to_its_least_customer_whatever_the_read_order() {
        let by = |customer_id, minute| LogEvent {
            customer_id,
            ..event("s", Action::Add, 30, minute)
        };
        assert_eq!(one_pass(&[by(9, 0), by(4, 1)]).carts["s"].customer_id, 4);
        assert_eq!(one_pass(&[by(4, 1), by(9, 0)]).carts["s"].customer_id, 4);

        // A later chunk with a lesser customer moves the cart, and its count, to them.
        let stored: Map<_, _> = one_pass(&[by(9, 0)]).carts.drain().collect();
        let mut second = Delta::default();
        second.add(&by(4, 1));
        second.settle_carts(stored);
        assert_eq!(second.carts["s"].customer_id, 4);
        assert_eq!(
            (second.customers[&9].carts, second.customers[&4].carts),
            (-1, 1)
        );
    }

    #[test]
    fn parts_read_apart_hold_each_cart_once_as_one_pass_would() {
        let events = [
            event("a", Action::Add, 30, 0),
            event("b", Action::Add, 40, 1),
            event("b", Action::Purchase, 40, 2),
            event("c", Action::Add, 50, 3),
        ];
        let whole = one_pass(&events);
        // A cut through cart "b": its add in the first part, its purchase in the second.
        let mut parts = vec![one_pass(&events[..2]).carts, one_pass(&events[2..]).carts];
        disjoint_carts(&mut parts);
        assert_eq!(parts[0].len() + parts[1].len(), whole.carts.len());
        for (key, cart) in &whole.carts {
            let held: Vec<&Cart> = parts.iter().filter_map(|p| p.get(key)).collect();
            assert_eq!(held, [cart], "cart {key}");
        }
        assert!(parts[0].contains_key("b") && !parts[1].contains_key("b"));
    }

    #[test]
    fn bands_match_the_producer() {
        assert_eq!(price_band(Cents(2499)), 0);
        assert_eq!(price_band(Cents::from_units(25)), 25);
        assert_eq!(price_band(Cents(9999)), 25);
        assert_eq!(price_band(Cents::from_units(695)), 500);
    }
}
