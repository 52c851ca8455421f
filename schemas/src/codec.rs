//! Encoding and decoding contract types in either wire format.

use std::collections::HashMap;
use std::error::Error as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, PoisonError, RwLock};

use apache_avro::error::Details;
use apache_avro::{Schema, from_avro_datum, to_avro_datum};

use crate::record::Fields;
use crate::{Contract, Error, Record, SchemaRef};

/// The two bytes that open an Avro single-object encoded message.
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER: usize = 2 + 8;
/// The Confluent wire format's magic byte, then a 4-byte big-endian schema id.
const CONFLUENT_MAGIC: u8 = 0x00;
const CONFLUENT_HEADER: usize = 1 + 4;

/// Largest string or byte field the decoder will allocate for. No message of the contract
/// comes near it; without it a corrupt length prefix would make the decoder allocate up to
/// apache-avro's 512 MiB default before noticing the body is too short.
const MAX_FIELD_BYTES: usize = 4 * 1024 * 1024;

/// How messages are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// Avro single-object encoding: `C3 01`, 8-byte fingerprint, body. Needs no registry.
    #[default]
    SingleObject,
    /// Confluent: `00`, 4-byte schema id from a schema registry, body.
    Confluent,
}

/// The schema a message was written with.
#[derive(Debug, Clone)]
pub enum Writer {
    /// One of the contract's schemas.
    Contract(SchemaRef),
    /// A schema of one of the contract's families that this build does not ship (a newer
    /// version, learned from a registry): read by resolving it to the reader's schema, so
    /// fields it adds are skipped.
    Foreign {
        family: &'static str,
        schema: Arc<Schema>,
    },
}

impl Writer {
    pub fn family(&self) -> &'static str {
        match self {
            Writer::Contract(s) => s.family(),
            Writer::Foreign { family, .. } => family,
        }
    }
}

impl PartialEq<SchemaRef> for Writer {
    fn eq(&self, other: &SchemaRef) -> bool {
        matches!(self, Writer::Contract(s) if s == other)
    }
}

/// The schema ids a schema registry assigned, to the contract's schemas or to others of its
/// families.
#[derive(Debug, Clone, Default)]
pub struct ConfluentIds {
    by_id: HashMap<u32, Writer>,
    by_schema: HashMap<SchemaRef, u32>,
}

impl ConfluentIds {
    pub fn insert(&mut self, id: u32, schema: SchemaRef) {
        self.by_id.insert(id, Writer::Contract(schema));
        self.by_schema.insert(schema, id);
    }

    /// The contract schema registered under `id`, if it is one.
    pub fn schema_of(&self, id: u32) -> Option<SchemaRef> {
        match self.by_id.get(&id)? {
            Writer::Contract(s) => Some(*s),
            Writer::Foreign { .. } => None,
        }
    }

    pub fn id_of(&self, schema: SchemaRef) -> Option<u32> {
        self.by_schema.get(&schema).copied()
    }

    /// What `schema_json`, registered under `id`, is to this build: a contract schema (same
    /// Parsing Canonical Form) or a foreign version of a contract family.
    pub fn learn(&mut self, id: u32, schema_json: &str) -> Result<Writer, Error> {
        let unsupported = |reason: String| Error::UnsupportedSchema { id, reason };
        let fingerprint = crate::canonical::parsing_fingerprint64(schema_json)
            .map_err(|e| unsupported(e.to_string()))?;
        let contract = Contract::get();
        let writer = match contract.by_fingerprint(fingerprint) {
            Some(known) => Writer::Contract(known),
            None => {
                let schema =
                    Schema::parse_str(schema_json).map_err(|e| unsupported(e.to_string()))?;
                let name = match &schema {
                    Schema::Record(r) => r.name.fullname(None),
                    other => return Err(unsupported(format!("not a record: {other:?}"))),
                };
                let family = SchemaRef::ALL
                    .into_iter()
                    .find(|s| {
                        contract
                            .schema(*s)
                            .name()
                            .is_some_and(|n| n.fullname(None) == name)
                    })
                    .map(SchemaRef::family)
                    .ok_or_else(|| {
                        unsupported(format!("{name} is not a record of the contract"))
                    })?;
                Writer::Foreign {
                    family,
                    schema: Arc::new(schema),
                }
            }
        };
        self.by_id.insert(id, writer.clone());
        Ok(writer)
    }

    fn writer(&self, id: u32) -> Option<Writer> {
        self.by_id.get(&id).cloned()
    }
}

/// Encodes in one wire format and decodes both.
///
/// Clones share the schema ids: what one learns from a registry, all read.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    format: WireFormat,
    ids: Arc<RwLock<ConfluentIds>>,
}

impl Codec {
    /// Single-object encoding; Confluent-framed input is refused as an unknown schema id.
    pub fn single_object() -> Self {
        Self::new(WireFormat::SingleObject, ConfluentIds::default())
    }

    /// Confluent framing with the ids a registry assigned.
    pub fn confluent(ids: ConfluentIds) -> Self {
        Self::new(WireFormat::Confluent, ids)
    }

    pub fn new(format: WireFormat, ids: ConfluentIds) -> Self {
        apache_avro::util::max_allocation_bytes(MAX_FIELD_BYTES);
        Codec {
            format,
            ids: Arc::new(RwLock::new(ids)),
        }
    }

    fn ids(&self) -> std::sync::RwLockReadGuard<'_, ConfluentIds> {
        // The lock is only written by `learn`, which cannot panic while holding it.
        self.ids.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what a registry says schema `id` is, for every clone of this codec.
    pub fn learn(&self, id: u32, schema_json: &str) -> Result<Writer, Error> {
        self.ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .learn(id, schema_json)
    }

    /// [`Codec::learn`], answering with the record family or why the schema is not one: the
    /// shape a registry lookup (`cartflow_common::registry::SchemaLookup`) takes.
    pub fn learn_family(&self, id: u32, schema_json: &str) -> Result<&'static str, String> {
        self.learn(id, schema_json)
            .map(|writer| writer.family())
            .map_err(|e| e.to_string())
    }

    /// The schema id of a Confluent-framed message whose schema this codec does not know
    /// yet: the one to ask a registry for.
    pub fn unknown_schema_id(&self, bytes: &[u8]) -> Option<u32> {
        let id = confluent_id(bytes)?;
        self.ids().writer(id).is_none().then_some(id)
    }

    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// Encodes `value` with its family's latest schema.
    pub fn encode<T: Record>(&self, value: &T) -> Result<Vec<u8>, Error> {
        self.encode_as(value, T::LATEST)
    }

    /// Encodes `value` with a given version of its family's schema.
    pub fn encode_as<T: Record>(&self, value: &T, schema: SchemaRef) -> Result<Vec<u8>, Error> {
        if schema.family() != T::FAMILY {
            return Err(Error::Encode(format!(
                "{schema} is not a {} schema",
                T::FAMILY
            )));
        }
        let contract = Contract::get();
        let mut out = Vec::with_capacity(256);
        match self.format {
            WireFormat::SingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MARKER);
                out.extend_from_slice(&contract.fingerprint(schema).to_le_bytes());
            }
            WireFormat::Confluent => {
                let id = self
                    .ids()
                    .id_of(schema)
                    .ok_or(Error::MissingSchemaId(schema))?;
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        if value.write_body(schema, &mut out).is_none() {
            let body = to_avro_datum(contract.schema(schema), value.to_avro(schema))
                .map_err(|e| Error::Encode(e.to_string()))?;
            out.extend_from_slice(&body);
        }
        Ok(out)
    }

    /// Whether a message is single-object encoded with one of the legacy fingerprints
    /// (apache-avro 0.21's, which cartflow wrote before the specification's; still read).
    pub fn has_legacy_fingerprint(bytes: &[u8]) -> bool {
        match bytes.get(..SINGLE_OBJECT_HEADER) {
            Some([0xC3, 0x01, fp @ ..]) => {
                let fp = u64::from_le_bytes(fp.try_into().unwrap_or_default());
                Contract::get().is_legacy(fp)
            }
            _ => false,
        }
    }

    /// The schema a message was written with, read from its header.
    pub fn writer_schema(&self, bytes: &[u8]) -> Result<Writer, Error> {
        self.split(bytes).map(|(schema, _)| schema)
    }

    /// Decodes a message of `T`'s family into `T`'s latest schema.
    pub fn decode<T: Record>(&self, bytes: &[u8]) -> Result<T, Error> {
        self.decode_with_reader(bytes, T::LATEST)
    }

    /// Decodes a message of `T`'s family, resolving the writer's schema to `reader`.
    pub fn decode_with_reader<T: Record>(
        &self,
        bytes: &[u8],
        reader: SchemaRef,
    ) -> Result<T, Error> {
        let (writer, body) = self.split(bytes)?;
        if writer.family() != T::FAMILY || reader.family() != T::FAMILY {
            return Err(Error::UnexpectedSchema {
                expected: T::FAMILY,
                found: writer.family(),
            });
        }
        let contract = Contract::get();
        let (writer_schema, reader_schema) = match &writer {
            Writer::Contract(w) => (
                contract.schema(*w),
                (reader != *w).then(|| contract.schema(reader)),
            ),
            Writer::Foreign { schema, .. } => (schema.as_ref(), Some(contract.schema(reader))),
        };
        let mut input = Guarded {
            rest: body,
            overrun: false,
        };
        // apache-avro returns errors for bad input; catching a panic as well keeps one
        // unforeseen corner of a third-party decoder from crash-looping a consumer.
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            from_avro_datum(writer_schema, &mut input, reader_schema)
        }))
        .map_err(|_| Error::InvalidBody("the Avro decoder panicked".into()))?
        .map_err(classify)?;
        if input.overrun {
            return Err(Error::TruncatedBody("the body ends inside a union".into()));
        }
        if !input.rest.is_empty() {
            return Err(Error::TrailingBytes(input.rest.len()));
        }
        T::from_avro(Fields::from_value(decoded)?)
    }

    fn split<'a>(&self, bytes: &'a [u8]) -> Result<(Writer, &'a [u8]), Error> {
        match bytes {
            [] => Err(Error::Empty),
            [0xC3, ..] => {
                if bytes.len() < SINGLE_OBJECT_HEADER {
                    return Err(Error::TruncatedHeader {
                        len: bytes.len(),
                        needed: SINGLE_OBJECT_HEADER,
                    });
                }
                if bytes[1] != SINGLE_OBJECT_MARKER[1] {
                    return Err(Error::BadMarker(bytes[0]));
                }
                let mut fp = [0u8; 8];
                fp.copy_from_slice(&bytes[2..SINGLE_OBJECT_HEADER]);
                let fp = u64::from_le_bytes(fp);
                let schema = Contract::get()
                    .by_fingerprint(fp)
                    .ok_or(Error::UnknownFingerprint(fp))?;
                Ok((Writer::Contract(schema), &bytes[SINGLE_OBJECT_HEADER..]))
            }
            [CONFLUENT_MAGIC, ..] => {
                if bytes.len() < CONFLUENT_HEADER {
                    return Err(Error::TruncatedHeader {
                        len: bytes.len(),
                        needed: CONFLUENT_HEADER,
                    });
                }
                let id = confluent_id(bytes).ok_or(Error::UnknownSchemaId(0))?;
                let writer = self.ids().writer(id).ok_or(Error::UnknownSchemaId(id))?;
                Ok((writer, &bytes[CONFLUENT_HEADER..]))
            }
            [other, ..] => Err(Error::BadMarker(*other)),
        }
    }
}

/// The schema id of a Confluent-framed message.
fn confluent_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [CONFLUENT_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The body, remembering whether the decoder ever asked for more than it holds.
///
/// apache-avro reads a union index that hits the end of input as `null` instead of failing,
/// so a v2 message cut just before its optional fields would otherwise decode "successfully".
struct Guarded<'a> {
    rest: &'a [u8],
    overrun: bool,
}

impl std::io::Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.overrun = true;
        }
        self.rest.read(buf)
    }
}

/// Maps apache-avro's error to the contract's typed error.
fn classify(e: apache_avro::Error) -> Error {
    if let Details::GetEnumValue { index, .. } = e.details() {
        return Error::BadEnumSymbol {
            enum_name: "CartAction",
            index: *index,
        };
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::UnexpectedEof
        {
            return Error::TruncatedBody(e.to_string());
        }
        source = s.source();
    }
    Error::InvalidBody(e.to_string())
}
