//! Money as whole cents in an `i64`, read from and written to PostgreSQL's `NUMERIC` directly.
//!
//! Every amount the projector sums comes from `events.product_price`, a `NUMERIC(18,2)`, and
//! every amount it stores goes to a `NUMERIC(20,2)` column: two decimal places, always. A
//! rebuild of 10 million events decodes a price per event, adds it into half a dozen maps
//! and encodes three amounts per cart; with `rust_decimal` (a 96-bit mantissa and a scale)
//! each of those was a multi-word operation, where cents are one machine add. The codec below
//! is PostgreSQL's binary `numeric` format (`numeric_send`): a header of four `int16`s (digit
//! count, weight, sign, display scale), then base-10,000 digits, most significant first.

use std::error::Error as StdError;
use std::ops::{Add, AddAssign, Mul, Sub, SubAssign};

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// An amount of money in cents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(pub i64);

/// `numeric`'s sign word for a positive value, a negative one, and NaN (the others are
/// infinities, which no amount column admits).
const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
/// The display scale written: the two decimal places of every amount column.
const SCALE: u16 = 2;
const NBASE: i128 = 10_000;

impl Cents {
    pub const ZERO: Cents = Cents(0);

    /// `units` whole currency units.
    pub const fn from_units(units: i64) -> Cents {
        Cents(units * 100)
    }
}

impl Add for Cents {
    type Output = Cents;
    fn add(self, o: Cents) -> Cents {
        Cents(self.0 + o.0)
    }
}

impl AddAssign for Cents {
    fn add_assign(&mut self, o: Cents) {
        self.0 += o.0;
    }
}

impl Sub for Cents {
    type Output = Cents;
    fn sub(self, o: Cents) -> Cents {
        Cents(self.0 - o.0)
    }
}

impl SubAssign for Cents {
    fn sub_assign(&mut self, o: Cents) {
        self.0 -= o.0;
    }
}

impl Mul<i64> for Cents {
    type Output = Cents;
    fn mul(self, n: i64) -> Cents {
        Cents(self.0 * n)
    }
}

impl<'a> FromSql<'a> for Cents {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Cents, BoxError> {
        let word = |i: usize| -> Result<u16, BoxError> {
            match raw.get(i..i + 2) {
                Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
                None => Err("numeric: message too short".into()),
            }
        };
        let ndigits = i32::from(word(0)? as i16);
        let weight = i32::from(word(2)? as i16);
        let negative = match word(4)? {
            POSITIVE => false,
            NEGATIVE => true,
            _ => return Err("numeric: NaN or infinity is not an amount of money".into()),
        };
        if ndigits < 0 || raw.len() != 8 + 2 * ndigits as usize {
            return Err("numeric: digit count does not match the message".into());
        }
        // Horner's rule over the digits down to the hundredths' group (exponent -1); any digit
        // below it would be a third decimal place.
        let mut value: i128 = 0;
        for i in 0..ndigits {
            let digit = i128::from(word(8 + 2 * i as usize)? as i16);
            if !(0..NBASE).contains(&digit) {
                return Err("numeric: digit out of range".into());
            }
            if weight - i >= -1 {
                value = value
                    .checked_mul(NBASE)
                    .and_then(|v| v.checked_add(digit))
                    .ok_or("numeric: too large for an amount of money")?;
            } else if digit != 0 {
                return Err("numeric: more than two decimal places".into());
            }
        }
        // The lowest digit read stood for 10,000^lowest; scale the sum to ten-thousandths.
        let lowest = (weight - ndigits + 1).max(-1);
        if ndigits > 0 && weight >= -1 {
            for _ in -1..lowest {
                value = value
                    .checked_mul(NBASE)
                    .ok_or("numeric: too large for an amount of money")?;
            }
        }
        if value % 100 != 0 {
            return Err("numeric: more than two decimal places".into());
        }
        let cents = i64::try_from(value / 100).map_err(|_| "numeric: too large for an amount")?;
        Ok(Cents(if negative { -cents } else { cents }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl ToSql for Cents {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let abs = self.0.unsigned_abs();
        let (mut units, hundredths) = (abs / 100, (abs % 100) as i16);
        // Base-10,000 digits of the whole units, least significant first: u64 needs five.
        let mut whole = [0i16; 5];
        let mut n = 0;
        while units > 0 {
            whole[n] = (units % 10_000) as i16;
            units /= 10_000;
            n += 1;
        }
        let mut digits = [0i16; 6];
        for (d, w) in digits.iter_mut().zip(whole[..n].iter().rev()) {
            *d = *w;
        }
        digits[n] = hundredths * 100;
        // No trailing zero digits, as PostgreSQL itself sends; zero has none at all.
        let mut len = n + 1;
        while len > 0 && digits[len - 1] == 0 {
            len -= 1;
        }
        let weight = if n > 0 { n as i16 - 1 } else { -1 };
        let sign = if self.0 < 0 { NEGATIVE } else { POSITIVE };
        out.reserve(8 + 2 * len);
        out.extend_from_slice(&(len as i16).to_be_bytes());
        out.extend_from_slice(&(if len == 0 { 0 } else { weight }).to_be_bytes());
        out.extend_from_slice(&(if len == 0 { POSITIVE } else { sign }).to_be_bytes());
        out.extend_from_slice(&SCALE.to_be_bytes());
        for d in &digits[..len] {
            out.extend_from_slice(&d.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    /// `rust_decimal`'s own codec is the independent peer: what it writes, `Cents` reads as
    /// the same amount, and what `Cents` writes, it reads back as the same amount.
    fn amounts() -> Vec<i64> {
        let mut v = vec![
            0,
            1,
            -1,
            10,
            99,
            100,
            101,
            9_999,
            10_000,
            10_001,
            123_456_789,
            100_000_000,
            999_999_999_999_999_999,
            -999_999_999_999_999_999,
            i64::MAX / 2,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let magnitude = 10i64.pow((x % 18) as u32);
            v.push((x >> 8) as i64 % magnitude * if x.is_multiple_of(3) { -1 } else { 1 });
        }
        v
    }

    #[test]
    fn reads_what_rust_decimal_writes() {
        for c in amounts() {
            let mut buf = bytes::BytesMut::new();
            Decimal::new(c, 2).to_sql(&Type::NUMERIC, &mut buf).unwrap();
            assert_eq!(
                Cents::from_sql(&Type::NUMERIC, &buf).unwrap(),
                Cents(c),
                "{c}"
            );
            // Written at scale 4, the same amount.
            if let Some(c4) = c.checked_mul(100) {
                let mut buf = bytes::BytesMut::new();
                Decimal::new(c4, 4)
                    .to_sql(&Type::NUMERIC, &mut buf)
                    .unwrap();
                assert_eq!(
                    Cents::from_sql(&Type::NUMERIC, &buf).unwrap(),
                    Cents(c),
                    "{c}"
                );
            }
        }
    }

    #[test]
    fn writes_what_rust_decimal_reads() {
        for c in amounts() {
            let mut buf = bytes::BytesMut::new();
            Cents(c).to_sql(&Type::NUMERIC, &mut buf).unwrap();
            let d = Decimal::from_sql(&Type::NUMERIC, &buf).unwrap();
            assert_eq!(d, Decimal::new(c, 2), "{c}");
        }
    }

    #[test]
    fn refuses_what_is_not_cents() {
        let refused = |d: Decimal| {
            let mut buf = bytes::BytesMut::new();
            d.to_sql(&Type::NUMERIC, &mut buf).unwrap();
            Cents::from_sql(&Type::NUMERIC, &buf)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(Decimal::new(1, 3)).contains("two decimal places"));
        assert!(refused(Decimal::new(123_456_789, 5)).contains("two decimal places"));
        assert!(refused(Decimal::MAX).contains("too large"));
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(
            Cents::from_sql(&Type::NUMERIC, &nan)
                .unwrap_err()
                .to_string()
                .contains("NaN")
        );
        assert!(Cents::from_sql(&Type::NUMERIC, &[0, 1, 0, 0]).is_err());
    }
}
