//! The schemas of the contract, parsed once, and their fingerprints: the specification's
//! (written by the encoder, see [`crate::canonical`]) and the legacy ones apache-avro 0.21
//! computed, which cartflow wrote before and which the decoder still accepts.

use std::fmt;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;

/// One schema of the contract. A family (`CartEvent`) may have several versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaRef {
    Product,
    Customer,
    CartEventV1,
    CartEventV2,
    CartOutcome,
}

impl SchemaRef {
    pub const ALL: [SchemaRef; 5] = [
        SchemaRef::Product,
        SchemaRef::Customer,
        SchemaRef::CartEventV1,
        SchemaRef::CartEventV2,
        SchemaRef::CartOutcome,
    ];

    /// The record family this schema is a version of.
    pub const fn family(self) -> &'static str {
        match self {
            SchemaRef::Product => "Product",
            SchemaRef::Customer => "Customer",
            SchemaRef::CartEventV1 | SchemaRef::CartEventV2 => "CartEvent",
            SchemaRef::CartOutcome => "CartOutcome",
        }
    }

    /// The `.avsc` text, as shipped in `schemas/avro/`.
    pub const fn avsc(self) -> &'static str {
        match self {
            SchemaRef::Product => include_str!("../avro/product.avsc"),
            SchemaRef::Customer => include_str!("../avro/customer.avsc"),
            SchemaRef::CartEventV1 => include_str!("../avro/cart_event_v1.avsc"),
            SchemaRef::CartEventV2 => include_str!("../avro/cart_event_v2.avsc"),
            SchemaRef::CartOutcome => include_str!("../avro/cart_outcome.avsc"),
        }
    }

    /// The schema with its version, as a subject name for a registry ("cart-events-value" is the
    /// topic's; this names the record).
    pub const fn name(self) -> &'static str {
        match self {
            SchemaRef::Product => "Product",
            SchemaRef::Customer => "Customer",
            SchemaRef::CartEventV1 => "CartEvent v1",
            SchemaRef::CartEventV2 => "CartEvent v2",
            SchemaRef::CartOutcome => "CartOutcome",
        }
    }

    const fn index(self) -> usize {
        match self {
            SchemaRef::Product => 0,
            SchemaRef::Customer => 1,
            SchemaRef::CartEventV1 => 2,
            SchemaRef::CartEventV2 => 3,
            SchemaRef::CartOutcome => 4,
        }
    }
}

impl fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parsed schemas and their CRC-64-AVRO fingerprints.
#[derive(Debug)]
pub struct Contract {
    schemas: [Schema; 5],
    fingerprints: [u64; 5],
    legacy: [u64; 5],
}

impl Contract {
    /// The process-wide contract. The `.avsc` files are compiled in, and a unit test parses
    /// them, so parsing here cannot fail at run time.
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| {
            let schemas = SchemaRef::ALL.map(|s| {
                Schema::parse_str(s.avsc())
                    .unwrap_or_else(|e| panic!("shipped schema {s} does not parse: {e}"))
            });
            let fingerprints = SchemaRef::ALL.map(|s| {
                crate::canonical::parsing_fingerprint64(s.avsc())
                    .unwrap_or_else(|e| panic!("shipped schema {s}: {e}"))
            });
            let legacy = std::array::from_fn(|i| {
                let fp = schemas[i].fingerprint::<Rabin>();
                let mut le = [0u8; 8];
                le.copy_from_slice(&fp.bytes);
                u64::from_le_bytes(le)
            });
            Contract {
                schemas,
                fingerprints,
                legacy,
            }
        })
    }

    pub fn schema(&self, s: SchemaRef) -> &Schema {
        &self.schemas[s.index()]
    }

    /// The CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, as the
    /// specification defines both: what the encoder writes.
    pub fn fingerprint(&self, s: SchemaRef) -> u64 {
        self.fingerprints[s.index()]
    }

    /// The fingerprint apache-avro 0.21 computed for the schema (logical types and decimal
    /// attributes left in its canonical form), which cartflow wrote until the specification's
    /// replaced it. Still accepted on reading.
    pub fn legacy_fingerprint(&self, s: SchemaRef) -> u64 {
        self.legacy[s.index()]
    }

    /// The schema a fingerprint names, the specification's or the legacy one.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<SchemaRef> {
        SchemaRef::ALL.into_iter().find(|s| {
            self.fingerprint(*s) == fingerprint || self.legacy_fingerprint(*s) == fingerprint
        })
    }

    /// Whether `fingerprint` is one of the legacy fingerprints.
    pub fn is_legacy(&self, fingerprint: u64) -> bool {
        self.legacy.contains(&fingerprint) && !self.fingerprints.contains(&fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_fingerprints_are_distinct() {
        let c = Contract::get();
        let mut fps: Vec<u64> = SchemaRef::ALL
            .iter()
            .flat_map(|s| [c.fingerprint(*s), c.legacy_fingerprint(*s)])
            .collect();
        fps.sort_unstable();
        fps.dedup();
        assert_eq!(
            fps.len(),
            2 * SchemaRef::ALL.len(),
            "spec and legacy fingerprints all differ"
        );
        for s in SchemaRef::ALL {
            assert_eq!(c.by_fingerprint(c.fingerprint(s)), Some(s));
            assert_eq!(c.by_fingerprint(c.legacy_fingerprint(s)), Some(s));
            assert!(c.is_legacy(c.legacy_fingerprint(s)));
            assert!(!c.is_legacy(c.fingerprint(s)));
        }
    }

    #[test]
    fn fingerprint_is_the_specifications_crc64_read_little_endian() {
        // Test vector from Avro's share/test/data/schema-tests.txt.
        let fp = Schema::parse_str(r#""null""#)
            .unwrap()
            .fingerprint::<Rabin>();
        let le: [u8; 8] = fp.bytes.try_into().unwrap();
        assert_eq!(i64::from_le_bytes(le), 7_195_948_357_588_979_594);
    }
}
