//! `Product`: a catalogue entry.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{self, Fields};
use crate::{Error, Money, Record, SchemaRef};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub rate: f64,
    pub count: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: i64,
    pub title: String,
    pub price: Money,
    pub description: String,
    pub image_url: String,
    pub category: String,
    pub rating: Rating,
    pub created_at: DateTime<Utc>,
}

impl Product {
    /// The rules a stored product obeys: a title, a category and a positive price.
    pub fn validate(&self) -> Result<(), Error> {
        if self.title.trim().is_empty() {
            return Err(Error::field("title", "is empty"));
        }
        if self.category.trim().is_empty() {
            return Err(Error::field("category", "is empty"));
        }
        if self.price.cents() > Money::MAX_CENTS {
            return Err(Error::field(
                "price",
                format!("{} does not fit decimal(18, 2)", self.price),
            ));
        }
        if self.price.cents() <= 0 {
            return Err(Error::field(
                "price",
                format!("{} is not positive", self.price),
            ));
        }
        Ok(())
    }
}

impl Record for Product {
    const FAMILY: &'static str = "Product";
    const LATEST: SchemaRef = SchemaRef::Product;

    fn to_avro(&self, _schema: SchemaRef) -> Value {
        Value::Record(vec![
            ("product_id".into(), Value::Long(self.product_id)),
            ("title".into(), Value::String(self.title.clone())),
            ("price".into(), record::money(self.price)),
            (
                "description".into(),
                Value::String(self.description.clone()),
            ),
            ("image_url".into(), Value::String(self.image_url.clone())),
            ("category".into(), Value::String(self.category.clone())),
            (
                "rating".into(),
                Value::Record(vec![
                    ("rate".into(), Value::Double(self.rating.rate)),
                    ("count".into(), Value::Int(self.rating.count)),
                ]),
            ),
            ("created_at".into(), record::timestamp(self.created_at)),
        ])
    }

    fn from_avro(mut f: Fields) -> Result<Self, Error> {
        let mut rating = f.record("rating")?;
        Ok(Product {
            product_id: f.long("product_id")?,
            title: f.string("title")?,
            price: f.money("price")?,
            description: f.string("description")?,
            image_url: f.string("image_url")?,
            category: f.string("category")?,
            rating: Rating {
                rate: rating.double("rate")?,
                count: rating.int("count")?,
            },
            created_at: f.timestamp("created_at")?,
        })
    }
}
