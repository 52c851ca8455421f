//! The recovery message: what a mailer needs to write to the shopper.

use cartflow_schemas::{CartOutcome, OutcomeKind};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// The outcome's id: the same on every delivery, for de-duplication.
    pub outcome_id: String,
    pub cart_key: String,
    pub customer_id: i64,
    /// Value left in the cart, in currency units.
    pub value: Decimal,
    pub items: Vec<Item>,
    /// When the shopper last touched the cart (RFC 3339).
    pub last_event_at: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price: Decimal,
}

impl Recovery {
    /// The message for `o`, when it is an abandoned cart worth at least `min_value`.
    pub fn of(o: &CartOutcome, min_value: Decimal) -> Option<Recovery> {
        let value = Decimal::from(o.value);
        if o.outcome != OutcomeKind::Abandoned || value < min_value {
            return None;
        }
        let count: i32 = o.items.iter().map(|i| i.quantity).sum();
        Some(Recovery {
            outcome_id: o.outcome_id.to_string(),
            cart_key: o.cart_key.clone(),
            customer_id: o.customer_id,
            value,
            items: o
                .items
                .iter()
                .map(|i| Item {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                })
                .collect(),
            last_event_at: o.last_event_at.to_rfc3339(),
            text: format!(
                "Customer {} left {count} item(s) worth {value} in their cart; remind them.",
                o.customer_id
            ),
        })
    }
}
