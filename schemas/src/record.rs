//! The bridge between contract types and Avro values.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, Money, SchemaRef};

/// A contract type: one Avro record family, possibly in several versions.
pub trait Record: Sized {
    /// The family name, as in error messages ("CartEvent").
    const FAMILY: &'static str;
    /// The version written by default and read into.
    const LATEST: SchemaRef;

    /// The Avro value of `self` in the shape of `schema` (one of this family's versions).
    fn to_avro(&self, schema: SchemaRef) -> Value;

    /// Appends the Avro body in the shape of `schema` without building a `Value`, for types
    /// on the hot path. `None`: not supported, use [`Record::to_avro`].
    fn write_body(&self, _schema: SchemaRef, _out: &mut Vec<u8>) -> Option<()> {
        None
    }

    /// Builds `Self` from a record already resolved to one of this family's schemas.
    fn from_avro(fields: Fields) -> Result<Self, Error>;
}

/// The fields of a decoded record, taken out one by one by name.
#[derive(Debug)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    pub(crate) fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(Error::InvalidBody(format!(
                "expected a record, found {other:?}"
            ))),
        }
    }

    fn take(&mut self, name: &'static str) -> Option<Value> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.swap_remove(at).1)
    }

    fn required(&mut self, name: &'static str) -> Result<Value, Error> {
        self.take(name).ok_or_else(|| Error::field(name, "missing"))
    }

    pub(crate) fn long(&mut self, name: &'static str) -> Result<i64, Error> {
        match self.required(name)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(wrong_type(name, "long", &other)),
        }
    }

    pub(crate) fn int(&mut self, name: &'static str) -> Result<i32, Error> {
        match self.required(name)? {
            Value::Int(v) => Ok(v),
            other => Err(wrong_type(name, "int", &other)),
        }
    }

    pub(crate) fn double(&mut self, name: &'static str) -> Result<f64, Error> {
        match self.required(name)? {
            Value::Double(v) => Ok(v),
            Value::Float(v) => Ok(f64::from(v)),
            other => Err(wrong_type(name, "double", &other)),
        }
    }

    pub(crate) fn string(&mut self, name: &'static str) -> Result<String, Error> {
        match self.required(name)? {
            Value::String(v) => Ok(v),
            other => Err(wrong_type(name, "string", &other)),
        }
    }

    /// A `["null", "string"]` union; absent (an older writer) reads as `None`.
    pub(crate) fn opt_string(&mut self, name: &'static str) -> Result<Option<String>, Error> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Union(_, inner)) => match *inner {
                Value::Null => Ok(None),
                Value::String(v) => Ok(Some(v)),
                other => Err(wrong_type(name, "string or null", &other)),
            },
            Some(Value::String(v)) => Ok(Some(v)),
            Some(other) => Err(wrong_type(name, "string or null", &other)),
        }
    }

    pub(crate) fn money(&mut self, name: &'static str) -> Result<Money, Error> {
        match self.required(name)? {
            Value::Decimal(d) => {
                let bytes =
                    Vec::<u8>::try_from(&d).map_err(|e| Error::field(name, e.to_string()))?;
                Money::from_avro_bytes(name, &bytes)
            }
            Value::Bytes(bytes) => Money::from_avro_bytes(name, &bytes),
            other => Err(wrong_type(name, "decimal", &other)),
        }
    }

    pub(crate) fn timestamp(&mut self, name: &'static str) -> Result<DateTime<Utc>, Error> {
        match self.required(name)? {
            Value::TimestampMillis(ms) | Value::Long(ms) => DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| Error::field(name, format!("{ms} ms is out of range"))),
            other => Err(wrong_type(name, "timestamp-millis", &other)),
        }
    }

    pub(crate) fn uuid(&mut self, name: &'static str) -> Result<Uuid, Error> {
        match self.required(name)? {
            Value::Uuid(v) => Ok(v),
            Value::String(s) => Uuid::parse_str(&s).map_err(|e| Error::field(name, e.to_string())),
            other => Err(wrong_type(name, "uuid", &other)),
        }
    }

    pub(crate) fn symbol(&mut self, name: &'static str) -> Result<String, Error> {
        match self.required(name)? {
            Value::Enum(_, symbol) => Ok(symbol),
            other => Err(wrong_type(name, "enum", &other)),
        }
    }

    pub(crate) fn record(&mut self, name: &'static str) -> Result<Fields, Error> {
        Fields::from_value(self.required(name)?)
    }

    pub(crate) fn array(&mut self, name: &'static str) -> Result<Vec<Value>, Error> {
        match self.required(name)? {
            Value::Array(items) => Ok(items),
            other => Err(wrong_type(name, "array", &other)),
        }
    }

    /// A record built from `value` (an array's item), for nested records.
    pub(crate) fn of(value: Value) -> Result<Fields, Error> {
        Fields::from_value(value)
    }

    /// An array of uuids.
    pub(crate) fn uuids(&mut self, name: &'static str) -> Result<Vec<Uuid>, Error> {
        self.array(name)?
            .into_iter()
            .map(|v| Fields(vec![(name.to_owned(), v)]).uuid(name))
            .collect()
    }
}

fn wrong_type(name: &'static str, expected: &str, found: &Value) -> Error {
    Error::field(name, format!("expected {expected}, found {found:?}"))
}

/// Avro value helpers for the `to_avro` side.
pub(crate) fn money(m: Money) -> Value {
    Value::Decimal(apache_avro::Decimal::from(m.to_avro_bytes()))
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> Value {
    Value::TimestampMillis(t.timestamp_millis())
}

pub(crate) fn opt_string(v: Option<&str>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.to_owned()))),
    }
}
