//! Exact money: an amount in cents, encoded as Avro `decimal(12, 2)`.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Error;

/// An amount of money in minor units (cents). Never a float: prices are summed into revenue.
/// In JSON it is a decimal string ("109.95"), exact in every client.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(into = "Decimal", try_from = "Decimal")]
pub struct Money(i64);

impl Money {
    /// The Avro scale of every money field.
    pub const SCALE: u32 = 2;
    /// The largest amount `decimal(18, 2)` (Avro and PostgreSQL alike) holds.
    pub const MAX_CENTS: i64 = 999_999_999_999_999_999;

    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Avro decimal bytes: the unscaled value as big-endian two's complement, eight bytes
    /// (the contract's `Money` is a `fixed(8)` decimal).
    pub(crate) fn to_avro_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub(crate) fn from_avro_bytes(field: &'static str, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Ok(Money(0));
        }
        if bytes.len() > 8 {
            return Err(Error::field(
                field,
                format!("decimal of {} bytes does not fit in 64 bits", bytes.len()),
            ));
        }
        let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
        let mut buf = [fill; 8];
        buf[8 - bytes.len()..].copy_from_slice(bytes);
        Ok(Money(i64::from_be_bytes(buf)))
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Decimal {
        Decimal::new(m.0, Money::SCALE)
    }
}

impl TryFrom<Decimal> for Money {
    type Error = Error;

    /// Exact only: 1.005 is refused rather than rounded.
    fn try_from(d: Decimal) -> Result<Self, Error> {
        let mut scaled = d;
        scaled.rescale(Money::SCALE);
        if scaled != d {
            return Err(Error::field(
                "money",
                format!("{d} has more than two decimals"),
            ));
        }
        i64::try_from(scaled.mantissa())
            .map(Money)
            .map_err(|_| Error::field("money", format!("{d} is out of range")))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Decimal::from(*self), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avro_bytes_round_trip_at_the_edges() {
        for cents in [
            0,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            69_500,
            10_995,
            i64::MAX,
            i64::MIN,
        ] {
            let m = Money::from_cents(cents);
            let back = Money::from_avro_bytes("price", &m.to_avro_bytes()).unwrap();
            assert_eq!(back, m, "{cents}");
        }
        assert_eq!(
            Money::from_avro_bytes("price", &[0x80]).unwrap().cents(),
            -128
        );
        assert_eq!(
            Money::from_avro_bytes("price", &[0x00, 0x80])
                .unwrap()
                .cents(),
            128
        );
        assert_eq!(Money::from_avro_bytes("price", &[]).unwrap().cents(), 0);
        assert!(Money::from_avro_bytes("price", &[1; 9]).is_err());
    }

    #[test]
    fn decimal_conversion_is_exact() {
        let d: Decimal = "695".parse().unwrap();
        assert_eq!(Money::try_from(d).unwrap().cents(), 69_500);
        assert_eq!(Money::from_cents(10_995).to_string(), "109.95");
        assert!(Money::try_from("1.005".parse::<Decimal>().unwrap()).is_err());
    }
}
