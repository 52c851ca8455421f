//! `Customer`: a shopper.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{self, Fields};
use crate::{Error, Record, SchemaRef};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub customer_id: i64,
    pub name: String,
    pub age: i32,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

impl Customer {
    /// The oldest age the `customers` table accepts.
    pub const MAX_AGE: i32 = 120;

    /// The rules of the `customers` table: age 0 to 120 and an email address.
    pub fn validate(&self) -> Result<(), Error> {
        if !(0..=Self::MAX_AGE).contains(&self.age) {
            return Err(Error::field(
                "age",
                format!("{} is outside 0..=120", self.age),
            ));
        }
        if !self.email.contains('@') {
            return Err(Error::field("email", "has no @"));
        }
        Ok(())
    }
}

impl Record for Customer {
    const FAMILY: &'static str = "Customer";
    const LATEST: SchemaRef = SchemaRef::Customer;

    fn to_avro(&self, _schema: SchemaRef) -> Value {
        Value::Record(vec![
            ("customer_id".into(), Value::Long(self.customer_id)),
            ("name".into(), Value::String(self.name.clone())),
            ("age".into(), Value::Int(self.age)),
            ("email".into(), Value::String(self.email.clone())),
            ("created_at".into(), record::timestamp(self.created_at)),
        ])
    }

    fn from_avro(mut f: Fields) -> Result<Self, Error> {
        Ok(Customer {
            customer_id: f.long("customer_id")?,
            name: f.string("name")?,
            age: f.int("age")?,
            email: f.string("email")?,
            created_at: f.timestamp("created_at")?,
        })
    }
}
