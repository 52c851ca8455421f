//! Cart outcomes (#17): what became of each cart, decided as the log is applied and written
//! to the outbox (`outcomes.outbox`) in the step's own transaction, so an outcome is decided
//! exactly once with the aggregates it follows from. The relay ([`crate::relay`]) publishes
//! the outbox.
//!
//! A cart's [`Verdict`] follows from its stored state and the abandonment clock, as the views
//! define them: purchased (any purchase), open (an event within `abandon_after` of the
//! watermark), then abandoned (items left) or emptied (none left). The verdict last declared
//! is kept in `outcomes.verdicts`; when the current one differs, the change is declared (see
//! [`transitions`]). Emptied is declared when the cart goes idle, like abandoned, not at the
//! moment its last item is removed: a shopper who empties a cart and goes on shopping would
//! otherwise get an outcome and a correction for every item.
//!
//! Which carts can have changed in a step: those it touched, and unpurchased carts the
//! watermark's move took past `abandon_after` ([`look_up`], [`after_step`]). [`reconcile`] compares every
//! cart: when the projector starts with outcomes newly on or another `--abandon-after` than
//! the last run's, and inside a rebuild's swap.

mod payload;

use std::collections::HashMap;

use cartflow_schemas::{CartOutcome, Codec, OutcomeKind};
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use cartflow_common::channels;

use crate::Error;
use crate::cents::Cents;
use crate::checkpoint::{Advance, Checkpoint};
use crate::delta::{Cart, Delta, Map};
use crate::sql::Db;

/// Carts compared per page of a full reconciliation.
const RECONCILE_PAGE: i64 = 5_000;

/// What a cart is now, by the views' definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Open,
    Purchased,
    Abandoned,
    Emptied,
}

impl Verdict {
    fn from_db(s: &str) -> Verdict {
        match s {
            "purchased" => Verdict::Purchased,
            "abandoned" => Verdict::Abandoned,
            "emptied" => Verdict::Emptied,
            _ => Verdict::Open,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::Purchased => "purchased",
            Verdict::Abandoned => "abandoned",
            Verdict::Emptied => "emptied",
        }
    }

    const fn outcome(self) -> Option<OutcomeKind> {
        match self {
            Verdict::Open => None,
            Verdict::Purchased => Some(OutcomeKind::Purchased),
            Verdict::Abandoned => Some(OutcomeKind::Abandoned),
            Verdict::Emptied => Some(OutcomeKind::Emptied),
        }
    }
}

/// The outcomes to declare when a cart last declared `declared` is now `now`. Purchased is
/// final; a cart declared abandoned or emptied that changed is first `reopened` (a late
/// purchase, the shopper back), then declared again if it has a new verdict.
pub fn transitions(declared: Verdict, now: Verdict) -> Vec<OutcomeKind> {
    match (declared, now) {
        (d, n) if d == n => vec![],
        (Verdict::Purchased, _) => vec![],
        (Verdict::Open, n) => n.outcome().into_iter().collect(),
        (Verdict::Abandoned | Verdict::Emptied, n) => std::iter::once(OutcomeKind::Reopened)
            .chain(n.outcome())
            .collect(),
    }
}

/// Outcomes declared, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided(pub HashMap<OutcomeKind, u64>);

impl Decided {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    fn merge(&mut self, o: Decided) {
        for (k, n) in o.0 {
            *self.0.entry(k).or_default() += n;
        }
    }
}

/// A cart whose verdict differs from the one declared.
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub cart_key: String,
    pub customer_id: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub revenue: Cents,
    /// Added minus removed value: what the analytics count as left in the cart.
    pub left_value: Cents,
    pub now: Verdict,
    pub declared: Verdict,
    pub sequence: i32,
}

/// The carts matching `filter` (SQL over `c`, a row of `{schema}.carts`) whose verdict
/// differs from the declared one, by the abandonment cutoff `$1`. The cutoff is a parameter,
/// not read from the checkpoint, so a step can look carts up before its write moves it.
fn changed_sql(schema: &str, filter: &str, tail: &str) -> String {
    format!(
        "WITH c AS (SELECT c.cart_key, c.customer_id, c.first_at, c.last_at, c.revenue, \
                  c.added_value - c.removed_value AS left_value, \
                  CASE WHEN c.purchases > 0 THEN 'purchased' \
                       WHEN c.last_at > $1::timestamptz THEN 'open' \
                       WHEN c.adds > c.removes THEN 'abandoned' ELSE 'emptied' END AS verdict \
               FROM {schema}.carts c WHERE {filter}) \
         SELECT c.*, coalesce(v.outcome, 'open') AS declared, coalesce(v.sequence, 0) AS sequence \
         FROM c LEFT JOIN outcomes.verdicts v USING (cart_key) \
         WHERE c.verdict <> coalesce(v.outcome, 'open') AND coalesce(v.outcome, '') <> 'purchased' \
         {tail}"
    )
}

async fn changed(
    client: &Db<'_, impl GenericClient + Sync>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Changed>, Error> {
    Ok(client
        .query(sql, params)
        .await?
        .iter()
        .map(|r| Changed {
            cart_key: r.get(0),
            customer_id: r.get(1),
            first_at: r.get(2),
            last_at: r.get(3),
            revenue: r.get(4),
            left_value: r.get(5),
            now: Verdict::from_db(r.get(6)),
            declared: Verdict::from_db(r.get(7)),
            sequence: r.get(8),
        })
        .collect())
}

/// The clock a decision is made by: the checkpoint after the step's write.
struct Clock {
    /// The watermark: an outcome's `decided_at`.
    decided_at: DateTime<Utc>,
    /// Carts last active at or before this are no longer open.
    cutoff: Option<DateTime<Utc>>,
    /// The log is applied below this transaction id: the events an outcome may name.
    applied_below: i64,
}

impl Clock {
    /// The clock of `schema`'s checkpoint as it stands.
    async fn read(
        client: &Db<'_, impl GenericClient + Sync>,
        schema: &str,
    ) -> Result<Clock, Error> {
        let checkpoint = Checkpoint::read(client, schema).await?;
        Ok(Clock::after(
            &checkpoint.advance(&Delta::default(), checkpoint.next_tx),
        ))
    }

    /// The clock once a step has moved the checkpoint as `advance` says.
    fn after(advance: &Advance) -> Clock {
        Clock {
            decided_at: advance.watermark.unwrap_or_else(Utc::now),
            cutoff: advance.cutoff,
            applied_below: advance.next_tx,
        }
    }

    /// What `cart` is now: the views' CASE (and [`changed_sql`]'s), in memory.
    fn verdict(&self, cart: &Cart) -> Verdict {
        let i = &cart.items;
        if i.purchases > 0 {
            Verdict::Purchased
        } else if self.cutoff.is_none_or(|cutoff| cart.last_at > cutoff) {
            Verdict::Open
        } else if i.adds > i.removes {
            Verdict::Abandoned
        } else {
            Verdict::Emptied
        }
    }
}

/// What a step's outcomes need from the database that the step's write does not change:
/// looked up by [`look_up`] beside the write, in the same pipelined round trip.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The declared verdicts of the carts that are candidates whatever the clock says.
    declared: HashMap<String, (Verdict, i32)>,
    /// Carts whose verdict the watermark's move changed (untouched ones among them).
    crossed: Vec<Changed>,
}

/// Looks up what [`after_step`] needs for `carts`, the carts a live step applies events to
/// (settled), when the step moves the checkpoint as `advance` says. Reads only what the
/// step's write leaves alone (the declared verdicts, and carts the step does not touch), so
/// it may run before or beside the write.
///
/// A touched cart's verdict is computed from `carts`; only those that can differ from their
/// declared verdict are looked up: the carts stored before, and carts purchased, whatever the
/// clock (a cart new in this step, [`Cart::new`], and still open cannot differ). The carts
/// the step does not touch change only when the watermark's move took them past
/// `abandon_after`: those are found in the table, through its index of unpurchased carts.
pub async fn look_up(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
    carts: &Map<String, Cart>,
    advance: &Advance,
) -> Result<Lookup, Error> {
    let early: Vec<&str> = carts
        .iter()
        .filter(|(_, cart)| candidate_whatever_the_clock(cart))
        .map(|(key, _)| key.as_str())
        .collect();
    // The bounds are parameters, so the range is an index condition on the partial index
    // of unpurchased carts.
    let crossed = changed_sql(
        schema,
        "c.purchases = 0 AND c.last_at <= $1::timestamptz \
         AND c.last_at > coalesce($2::timestamptz, '-infinity')",
        "",
    );
    let bounds: [&(dyn ToSql + Sync); 2] = [&advance.cutoff, &advance.old_cutoff];
    let (declared, crossed) = futures::try_join!(
        declared_verdicts(client, &early),
        changed(client, &crossed, &bounds),
    )?;
    let crossed = crossed
        .into_iter()
        .filter(|c| !carts.contains_key(&c.cart_key))
        .collect();
    Ok(Lookup { declared, crossed })
}

/// Declares the outcomes a live step changed, in the step's transaction after its write:
/// `carts` are the carts it applied events to, in their new full state, `advance` how it
/// moved the checkpoint and `lookup` what [`look_up`] found. Tells the relay (`pg_notify`,
/// sent with the outbox rows) when something was declared.
pub async fn after_step(
    client: &Db<'_, impl GenericClient + Sync>,
    carts: &Map<String, Cart>,
    advance: &Advance,
    lookup: Lookup,
) -> Result<Decided, Error> {
    let clock = Clock::after(advance);
    let Lookup {
        mut declared,
        crossed,
    } = lookup;
    let candidates: Vec<(&String, &Cart, Verdict)> = carts
        .iter()
        .map(|(key, cart)| (key, cart, clock.verdict(cart)))
        .filter(|(_, cart, now)| *now != Verdict::Open || !cart.new)
        .collect();
    // A new cart without a purchase is a candidate only when the clock has already passed it
    // (late events): those few are looked up now.
    let late: Vec<&str> = candidates
        .iter()
        .filter(|(_, cart, _)| !candidate_whatever_the_clock(cart))
        .map(|(key, _, _)| key.as_str())
        .collect();
    if !late.is_empty() {
        declared.extend(declared_verdicts(client, &late).await?);
    }
    let mut changed: Vec<Changed> = candidates
        .into_iter()
        .filter_map(|(key, cart, now)| {
            let (declared, sequence) = declared.get(key).copied().unwrap_or((Verdict::Open, 0));
            (!transitions(declared, now).is_empty()).then(|| Changed {
                cart_key: key.clone(),
                customer_id: cart.customer_id,
                first_at: cart.first_at,
                last_at: cart.last_at,
                revenue: cart.items.revenue,
                left_value: cart.items.added_value - cart.items.removed_value,
                now,
                declared,
                sequence,
            })
        })
        .collect();
    changed.extend(crossed);
    declare(client, &clock, changed, true).await
}

/// Whether `cart` is a candidate of [`after_step`] whatever the clock: stored before, or
/// purchased (never open).
fn candidate_whatever_the_clock(cart: &Cart) -> bool {
    !cart.new || cart.items.purchases > 0
}

/// The declared verdict and sequence of each of `keys` that has one.
async fn declared_verdicts(
    client: &Db<'_, impl GenericClient + Sync>,
    keys: &[&str],
) -> Result<HashMap<String, (Verdict, i32)>, Error> {
    Ok(client
        .query(
            // One index probe per key, as store::stored_carts reads carts.
            "SELECT v.* FROM unnest($1::text[]) AS k(key), LATERAL ( \
                 SELECT cart_key, outcome, sequence FROM outcomes.verdicts \
                 WHERE cart_key = k.key OFFSET 0) AS v",
            &[&keys],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (Verdict::from_db(r.get(1)), r.get(2))))
        .collect())
}

/// Compares every cart with its declared verdict and declares the differences, a page of
/// carts at a time (each page in the caller's transaction when `client` is one). Returns the
/// outcomes declared.
pub async fn reconcile(
    client: &Db<'_, impl GenericClient + Sync>,
    schema: &str,
) -> Result<Decided, Error> {
    let clock = Clock::read(client, schema).await?;
    let sql = changed_sql(
        schema,
        "c.cart_key > $2",
        &format!("ORDER BY c.cart_key LIMIT {RECONCILE_PAGE}"),
    );
    let mut decided = Decided::default();
    let mut after = String::new();
    loop {
        let page = changed(client, &sql, &[&clock.cutoff, &after]).await?;
        let Some(last) = page.last() else {
            return Ok(decided);
        };
        after = last.cart_key.clone();
        decided.merge(declare(client, &clock, page, false).await?);
    }
}

/// Writes the outcomes of `changed` carts to the outbox and their new verdicts, in one
/// statement, and with `notify` tells the relay in the same round trip.
async fn declare(
    client: &Db<'_, impl GenericClient + Sync>,
    clock: &Clock,
    mut changed: Vec<Changed>,
    notify: bool,
) -> Result<Decided, Error> {
    changed.retain(|c| !transitions(c.declared, c.now).is_empty());
    let mut decided = Decided::default();
    if changed.is_empty() {
        return Ok(decided);
    }
    let carts = payload::read_carts(client, &mut changed, clock.applied_below).await?;
    let codec = Codec::single_object();
    let mut outbox = OutboxRows::default();
    let (mut keys, mut verdicts, mut sequences) = (vec![], vec![], vec![]);
    for c in &changed {
        let events = carts.get(&c.cart_key).map(Vec::as_slice).unwrap_or(&[]);
        let mut sequence = c.sequence;
        for kind in transitions(c.declared, c.now) {
            sequence += 1;
            let outcome = payload::outcome(c, kind, sequence, clock.decided_at, events);
            let bytes = codec
                .encode(&outcome)
                .map_err(|e| Error::Encode(e.to_string()))?;
            outbox.push(&outcome, bytes);
            *decided.0.entry(kind).or_default() += 1;
        }
        keys.push(c.cart_key.as_str());
        verdicts.push(c.now.as_str());
        sequences.push(sequence);
    }
    let message = channels::OutcomesDecided {
        decided: decided.total(),
    };
    let params: [&(dyn ToSql + Sync); 8] = [
        &outbox.ids,
        &outbox.keys,
        &outbox.customers,
        &outbox.kinds,
        &outbox.payloads,
        &keys,
        &verdicts,
        &sequences,
    ];
    let write = client.execute(
        "WITH outbox AS ( \
                 INSERT INTO outcomes.outbox (outcome_id, cart_key, customer_id, outcome, payload) \
                 SELECT id, k, c, o, p \
                 FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::bytea[]) \
                     WITH ORDINALITY AS x(id, k, c, o, p, n) ORDER BY n \
                 ON CONFLICT (outcome_id) DO NOTHING) \
             INSERT INTO outcomes.verdicts (cart_key, outcome, sequence) \
             SELECT * FROM UNNEST($6::text[], $7::text[], $8::int4[]) \
             ON CONFLICT (cart_key) DO UPDATE SET outcome = EXCLUDED.outcome, \
                 sequence = EXCLUDED.sequence",
        &params,
    );
    if notify {
        futures::try_join!(write, client.notify(channels::OUTCOMES, &message))?;
    } else {
        write.await?;
    }
    Ok(decided)
}

/// Outbox rows as columns, inserted in decision order (`seq`). An outcome already in the
/// outbox (the same cart and sequence decided again) is left as it is: ids are deterministic.
#[derive(Default)]
struct OutboxRows {
    ids: Vec<Uuid>,
    keys: Vec<String>,
    customers: Vec<i64>,
    kinds: Vec<&'static str>,
    payloads: Vec<Vec<u8>>,
}

impl OutboxRows {
    fn push(&mut self, o: &CartOutcome, payload: Vec<u8>) {
        self.ids.push(o.outcome_id);
        self.keys.push(o.cart_key.clone());
        self.customers.push(o.customer_id);
        self.kinds.push(o.outcome.as_str());
        self.payloads.push(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutcomeKind as K;
    use Verdict as V;

    #[test]
    fn a_late_purchase_reopens_an_abandoned_cart() {
        assert_eq!(
            transitions(V::Abandoned, V::Purchased),
            [K::Reopened, K::Purchased]
        );
        assert_eq!(transitions(V::Abandoned, V::Open), [K::Reopened]);
        assert_eq!(
            transitions(V::Emptied, V::Abandoned),
            [K::Reopened, K::Abandoned]
        );
    }

    #[test]
    fn open_carts_declare_their_first_outcome_and_purchased_is_final() {
        assert_eq!(transitions(V::Open, V::Abandoned), [K::Abandoned]);
        assert_eq!(transitions(V::Open, V::Purchased), [K::Purchased]);
        assert!(transitions(V::Open, V::Open).is_empty());
        assert!(transitions(V::Purchased, V::Abandoned).is_empty());
        assert!(transitions(V::Abandoned, V::Abandoned).is_empty());
    }
}
