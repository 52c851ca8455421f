//! A hand-written Avro binary writer for the hot paths: cart events (the producer) and cart
//! outcomes (the projector, one per cart).
//!
//! apache-avro builds a `Value` tree per record and validates it against the schema, which
//! caps encoding near 230k events/s; the producer's backfill needs more. Avro's binary format
//! for a flat record is simple (zig-zag varints, length-prefixed strings, raw fixed bytes), so
//! cart events are written directly. apache-avro stays the reference: a property test checks
//! that both produce the same bytes for any event.

use crate::{CartEvent, CartOutcome, Money, SchemaRef};

pub(crate) fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn money(out: &mut Vec<u8>, m: Money) {
    out.extend_from_slice(&m.to_avro_bytes());
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => long(out, 0),
        Some(s) => {
            long(out, 1);
            string(out, s);
        }
    }
}

/// Appends the Avro body of `e` in the shape of `schema` (v1 or v2).
pub(crate) fn cart_event(out: &mut Vec<u8>, e: &CartEvent, schema: SchemaRef) {
    let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    string(out, e.event_id.hyphenated().encode_lower(&mut uuid));
    long(out, e.customer_id);
    long(out, e.product_id);
    string(out, &e.product_title);
    money(out, e.product_price);
    string(out, &e.product_image);
    long(out, i64::from(e.action.index()));
    string(out, &e.description);
    long(out, e.timestamp.timestamp_millis());
    if schema == SchemaRef::CartEventV2 {
        optional(out, e.session_id.as_deref());
        optional(out, e.user_agent.as_deref());
        match e.ip_address {
            None => long(out, 0),
            Some(ip) => {
                long(out, 1);
                string(out, &ip.to_string());
            }
        }
    }
}

fn uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    string(out, id.hyphenated().encode_lower(&mut text));
}

/// Appends the Avro body of `o`. Arrays are written as one block (count, items, then 0).
pub(crate) fn cart_outcome(out: &mut Vec<u8>, o: &CartOutcome) {
    uuid(out, &o.outcome_id);
    string(out, &o.cart_key);
    long(out, o.customer_id);
    long(out, i64::from(o.outcome.index()));
    long(out, i64::from(o.sequence));
    money(out, o.value);
    if !o.items.is_empty() {
        long(out, o.items.len() as i64);
        for i in &o.items {
            long(out, i.product_id);
            long(out, i64::from(i.quantity));
            money(out, i.unit_price);
        }
    }
    long(out, 0);
    long(out, o.first_event_at.timestamp_millis());
    long(out, o.last_event_at.timestamp_millis());
    long(out, o.decided_at.timestamp_millis());
    if !o.event_ids.is_empty() {
        long(out, o.event_ids.len() as i64);
        for id in &o.event_ids {
            uuid(out, id);
        }
    }
    long(out, 0);
}
