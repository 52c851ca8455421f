//! The four schemas of the contract, parsed once, and their fingerprints.

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
}

impl SchemaRef {
    pub const ALL: [SchemaRef; 4] = [
        SchemaRef::Product,
        SchemaRef::Customer,
        SchemaRef::CartEventV1,
        SchemaRef::CartEventV2,
    ];

    /// The record family this schema is a version of.
    pub const fn family(self) -> &'static str {
        match self {
            SchemaRef::Product => "Product",
            SchemaRef::Customer => "Customer",
            SchemaRef::CartEventV1 | SchemaRef::CartEventV2 => "CartEvent",
        }
    }

    /// The `.avsc` text, as shipped in `schemas/avro/`.
    pub const fn avsc(self) -> &'static str {
        match self {
            SchemaRef::Product => include_str!("../avro/product.avsc"),
            SchemaRef::Customer => include_str!("../avro/customer.avsc"),
            SchemaRef::CartEventV1 => include_str!("../avro/cart_event_v1.avsc"),
            SchemaRef::CartEventV2 => include_str!("../avro/cart_event_v2.avsc"),
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
        }
    }

    const fn index(self) -> usize {
        match self {
            SchemaRef::Product => 0,
            SchemaRef::Customer => 1,
            SchemaRef::CartEventV1 => 2,
            SchemaRef::CartEventV2 => 3,
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
    schemas: [Schema; 4],
    fingerprints: [u64; 4],
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
            let fingerprints = std::array::from_fn(|i| {
                let fp = schemas[i].fingerprint::<Rabin>();
                let mut le = [0u8; 8];
                le.copy_from_slice(&fp.bytes);
                u64::from_le_bytes(le)
            });
            Contract {
                schemas,
                fingerprints,
            }
        })
    }

    pub fn schema(&self, s: SchemaRef) -> &Schema {
        &self.schemas[s.index()]
    }

    /// The 64-bit Rabin fingerprint of the schema's Parsing Canonical Form.
    pub fn fingerprint(&self, s: SchemaRef) -> u64 {
        self.fingerprints[s.index()]
    }

    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<SchemaRef> {
        SchemaRef::ALL
            .into_iter()
            .find(|s| self.fingerprint(*s) == fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_fingerprints_are_distinct() {
        let c = Contract::get();
        let mut fps: Vec<u64> = SchemaRef::ALL.iter().map(|s| c.fingerprint(*s)).collect();
        fps.sort_unstable();
        fps.dedup();
        assert_eq!(fps.len(), 4);
        for s in SchemaRef::ALL {
            assert_eq!(c.by_fingerprint(c.fingerprint(s)), Some(s));
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
