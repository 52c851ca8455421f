//! `CartEvent`: one shopper action, in version 1 (the original events table) or version 2
//! (with the optional session, user agent and IP address).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{self, Fields};
use crate::{Error, Money, Record, SchemaRef};

/// What the shopper did. The symbols are the values of `events.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    AddToCart,
    RemoveFromCart,
    PurchaseCart,
}

impl Action {
    pub const ALL: [Action; 3] = [
        Action::AddToCart,
        Action::RemoveFromCart,
        Action::PurchaseCart,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::AddToCart => "add_to_cart",
            Action::RemoveFromCart => "remove_from_cart",
            Action::PurchaseCart => "purchase_cart",
        }
    }

    pub(crate) const fn index(self) -> u32 {
        match self {
            Action::AddToCart => 0,
            Action::RemoveFromCart => 1,
            Action::PurchaseCart => 2,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::field("action", format!("unknown action {s:?}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartEvent {
    pub event_id: Uuid,
    pub customer_id: i64,
    pub product_id: i64,
    pub product_title: String,
    pub product_price: Money,
    pub product_image: String,
    pub action: Action,
    pub description: String,
    pub timestamp: DateTime<Utc>,
    /// Version 2 only; `None` when written as version 1.
    pub session_id: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<IpAddr>,
}

impl CartEvent {
    /// The rules of the `events` table that the schema cannot state: a positive price.
    pub fn validate(&self) -> Result<(), Error> {
        if self.product_price.cents() > Money::MAX_CENTS {
            return Err(Error::field(
                "product_price",
                format!("{} does not fit decimal(18, 2)", self.product_price),
            ));
        }
        if self.product_price.cents() <= 0 {
            return Err(Error::field(
                "product_price",
                format!("{} is not positive", self.product_price),
            ));
        }
        Ok(())
    }

    /// The Kafka key: the customer, so each customer's events stay in order on one partition.
    pub fn key(&self) -> String {
        self.customer_id.to_string()
    }
}

impl Record for CartEvent {
    const FAMILY: &'static str = "CartEvent";
    const LATEST: SchemaRef = SchemaRef::CartEventV2;

    fn to_avro(&self, schema: SchemaRef) -> Value {
        let mut fields = vec![
            ("event_id".into(), Value::Uuid(self.event_id)),
            ("customer_id".into(), Value::Long(self.customer_id)),
            ("product_id".into(), Value::Long(self.product_id)),
            (
                "product_title".into(),
                Value::String(self.product_title.clone()),
            ),
            ("product_price".into(), record::money(self.product_price)),
            (
                "product_image".into(),
                Value::String(self.product_image.clone()),
            ),
            (
                "action".into(),
                Value::Enum(self.action.index(), self.action.as_str().into()),
            ),
            (
                "description".into(),
                Value::String(self.description.clone()),
            ),
            ("timestamp".into(), record::timestamp(self.timestamp)),
        ];
        if schema == SchemaRef::CartEventV2 {
            let ip = self.ip_address.map(|ip| ip.to_string());
            fields.extend([
                (
                    "session_id".into(),
                    record::opt_string(self.session_id.as_deref()),
                ),
                (
                    "user_agent".into(),
                    record::opt_string(self.user_agent.as_deref()),
                ),
                ("ip_address".into(), record::opt_string(ip.as_deref())),
            ]);
        }
        Value::Record(fields)
    }

    fn write_body(&self, schema: SchemaRef, out: &mut Vec<u8>) -> Option<()> {
        crate::fast::cart_event(out, self, schema);
        Some(())
    }

    fn from_avro(mut f: Fields) -> Result<Self, Error> {
        let ip_address = f
            .opt_string("ip_address")?
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| Error::field("ip_address", format!("{s:?} is not an IP address")))
            })
            .transpose()?;
        Ok(CartEvent {
            event_id: f.uuid("event_id")?,
            customer_id: f.long("customer_id")?,
            product_id: f.long("product_id")?,
            product_title: f.string("product_title")?,
            product_price: f.money("product_price")?,
            product_image: f.string("product_image")?,
            action: f.symbol("action")?.parse()?,
            description: f.string("description")?,
            timestamp: f.timestamp("timestamp")?,
            session_id: f.opt_string("session_id")?,
            user_agent: f.opt_string("user_agent")?,
            ip_address,
        })
    }
}
