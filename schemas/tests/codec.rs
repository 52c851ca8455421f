//! The wire contract: round trips, schema evolution in both directions, and a typed error for
//! every kind of bad input.

use std::net::IpAddr;

use apache_avro::types::Value;
use apache_avro::{Schema, to_avro_datum};
use cartflow_schemas::{
    Action, CartEvent, Codec, ConfluentIds, Contract, Customer, Error, Money, Product, Rating,
    SchemaRef,
};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 18, 30, 5).unwrap()
}

fn event() -> CartEvent {
    CartEvent {
        event_id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        customer_id: 42,
        product_id: 9,
        product_title: "WD 2TB Elements Portable External Hard Drive".into(),
        product_price: Money::from_cents(6_400),
        product_image: "https://fakestoreapi.com/img/61IBBVJvSDL._AC_SY879_.jpg".into(),
        action: Action::RemoveFromCart,
        description: "Customer 42 removed product 9 from the cart".into(),
        timestamp: at(),
        session_id: Some("s-42-7".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip_address: Some("2001:db8::7".parse::<IpAddr>().unwrap()),
    }
}

fn product() -> Product {
    Product {
        product_id: 14,
        title: "Samsung 49-Inch CHG90 144Hz Curved Gaming Monitor".into(),
        price: Money::from_cents(99_999),
        description: "49 inch super ultrawide".into(),
        image_url: "https://fakestoreapi.com/img/81Zt42ioCgL._AC_SX679_.jpg".into(),
        category: "electronics".into(),
        rating: Rating {
            rate: 2.2,
            count: 140,
        },
        created_at: at(),
    }
}

fn customer() -> Customer {
    Customer {
        customer_id: 42,
        name: "Ada Lovelace".into(),
        age: 36,
        email: "ada.42@example.com".into(),
        created_at: at(),
    }
}

fn confluent() -> Codec {
    let mut ids = ConfluentIds::default();
    for (id, s) in [
        (1, SchemaRef::Product),
        (2, SchemaRef::Customer),
        (7, SchemaRef::CartEventV1),
        (8, SchemaRef::CartEventV2),
    ] {
        ids.insert(id, s);
    }
    Codec::confluent(ids)
}

#[test]
fn every_type_round_trips_in_both_wire_formats() {
    for codec in [Codec::single_object(), confluent()] {
        let e = event();
        assert_eq!(
            codec
                .decode::<CartEvent>(&codec.encode(&e).unwrap())
                .unwrap(),
            e
        );
        let p = product();
        assert_eq!(
            codec.decode::<Product>(&codec.encode(&p).unwrap()).unwrap(),
            p
        );
        let c = customer();
        assert_eq!(
            codec
                .decode::<Customer>(&codec.encode(&c).unwrap())
                .unwrap(),
            c
        );
    }
}

#[test]
fn single_object_header_is_marker_then_little_endian_fingerprint() {
    let bytes = Codec::single_object().encode(&event()).unwrap();
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    let fp = Contract::get().fingerprint(SchemaRef::CartEventV2);
    assert_eq!(&bytes[2..10], &fp.to_le_bytes());
}

#[test]
fn confluent_header_is_magic_then_big_endian_id() {
    let bytes = confluent()
        .encode_as(&event(), SchemaRef::CartEventV1)
        .unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
}

#[test]
fn whole_number_prices_are_exact() {
    let mut p = product();
    p.price = Money::from_cents(69_500);
    let codec = Codec::single_object();
    let back = codec.decode::<Product>(&codec.encode(&p).unwrap()).unwrap();
    assert_eq!(back.price.to_string(), "695.00");
}

#[test]
fn v1_data_reads_with_the_v2_schema() {
    let codec = Codec::single_object();
    let bytes = codec.encode_as(&event(), SchemaRef::CartEventV1).unwrap();
    assert_eq!(codec.writer_schema(&bytes).unwrap(), SchemaRef::CartEventV1);
    let read = codec
        .decode_with_reader::<CartEvent>(&bytes, SchemaRef::CartEventV2)
        .unwrap();
    let expected = CartEvent {
        session_id: None,
        user_agent: None,
        ip_address: None,
        ..event()
    };
    assert_eq!(read, expected);
}

#[test]
fn v2_data_reads_with_the_v1_schema() {
    let codec = Codec::single_object();
    let bytes = codec.encode_as(&event(), SchemaRef::CartEventV2).unwrap();
    let read = codec
        .decode_with_reader::<CartEvent>(&bytes, SchemaRef::CartEventV1)
        .unwrap();
    // The v1 reader ignores the fields it does not know; everything else survives.
    let expected = CartEvent {
        session_id: None,
        user_agent: None,
        ip_address: None,
        ..event()
    };
    assert_eq!(read, expected);
}

#[test]
fn empty_input_is_empty() {
    assert!(matches!(
        Codec::single_object().decode::<CartEvent>(&[]),
        Err(Error::Empty)
    ));
}

#[test]
fn wrong_marker_is_refused() {
    let mut bytes = Codec::single_object().encode(&event()).unwrap();
    bytes[0] = b'{';
    assert!(matches!(
        Codec::single_object().decode::<CartEvent>(&bytes),
        Err(Error::BadMarker(b'{'))
    ));
    bytes[0] = 0xC3;
    bytes[1] = 0x02;
    assert!(matches!(
        Codec::single_object().decode::<CartEvent>(&bytes),
        Err(Error::BadMarker(_))
    ));
}

#[test]
fn unknown_fingerprint_is_refused() {
    let mut bytes = Codec::single_object().encode(&event()).unwrap();
    bytes[5] ^= 0xFF;
    let err = Codec::single_object()
        .decode::<CartEvent>(&bytes)
        .unwrap_err();
    assert!(matches!(err, Error::UnknownFingerprint(_)), "{err}");
    assert_eq!(err.reason(), "unknown_fingerprint");
}

#[test]
fn unknown_schema_id_is_refused() {
    let mut bytes = confluent().encode(&event()).unwrap();
    bytes[4] = 99;
    assert!(matches!(
        confluent().decode::<CartEvent>(&bytes),
        Err(Error::UnknownSchemaId(99))
    ));
    // Without a registry no id is known at all.
    assert!(matches!(
        Codec::single_object().decode::<CartEvent>(&bytes),
        Err(Error::UnknownSchemaId(99))
    ));
}

#[test]
fn a_message_of_another_family_is_refused() {
    let codec = Codec::single_object();
    let bytes = codec.encode(&customer()).unwrap();
    assert!(matches!(
        codec.decode::<CartEvent>(&bytes),
        Err(Error::UnexpectedSchema { .. })
    ));
}

#[test]
fn truncated_input_is_truncated_at_every_length() {
    let codec = Codec::single_object();
    let bytes = codec.encode(&event()).unwrap();
    for len in 1..bytes.len() {
        let err = codec.decode::<CartEvent>(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, Error::TruncatedHeader { .. } | Error::TruncatedBody(_)),
            "length {len}: {err:?}"
        );
    }
}

#[test]
fn trailing_garbage_is_refused() {
    let codec = Codec::single_object();
    let mut bytes = codec.encode(&event()).unwrap();
    bytes.extend_from_slice(b"junk");
    assert!(matches!(
        codec.decode::<CartEvent>(&bytes),
        Err(Error::TrailingBytes(4))
    ));
}

#[test]
fn wrong_enum_symbol_is_refused() {
    // Forge a v1 body whose action index (5) names no symbol: the same fields with the enum
    // written as the int it is on the wire, framed with the real v1 fingerprint.
    let mut json: serde_json::Value = serde_json::from_str(SchemaRef::CartEventV1.avsc()).unwrap();
    for field in json["fields"].as_array_mut().unwrap() {
        if field["name"] == "action" {
            field["type"] = "int".into();
        }
    }
    let forged = Schema::parse_str(&json.to_string()).unwrap();
    let codec = Codec::single_object();
    let good = codec.encode_as(&event(), SchemaRef::CartEventV1).unwrap();
    let real = apache_avro::from_avro_datum(
        Contract::get().schema(SchemaRef::CartEventV1),
        &mut &good[10..],
        None,
    )
    .unwrap();
    let Value::Record(real) = real else {
        panic!("not a record")
    };
    let fields = real
        .into_iter()
        .map(|(name, value)| {
            let value = if name == "action" {
                Value::Int(5)
            } else {
                value
            };
            (name, value)
        })
        .collect();
    let body = to_avro_datum(&forged, Value::Record(fields)).unwrap();
    let mut bytes = good[..10].to_vec();
    bytes.extend_from_slice(&body);
    let err = codec.decode::<CartEvent>(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::BadEnumSymbol { index: 5, .. }),
        "{err:?}"
    );
}

#[test]
fn rules_the_schema_cannot_state_are_validated() {
    let mut c = customer();
    c.age = 150;
    assert!(c.validate().is_err());
    c.age = 120;
    assert!(c.validate().is_ok());
    let mut e = event();
    e.product_price = Money::from_cents(-100);
    assert!(e.validate().is_err());
    let mut p = product();
    p.title = " ".into();
    assert!(p.validate().is_err());
}

/// A version 3 a newer writer might register: version 2 plus an optional `gift_message`.
const CART_EVENT_V3: &str = include_str!("../../tests/data/cart_event_v3.avsc");

/// `event()` as a v3 writer frames it under schema id `id`: the v2 body, then the added field
/// (a record's body is its fields' encodings in order; union branch 1, a 4-byte string).
fn v3_message(id: u32) -> Vec<u8> {
    let v2 = confluent()
        .encode_as(&event(), SchemaRef::CartEventV2)
        .unwrap();
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&v2[5..]);
    out.extend_from_slice(&[0x02, 0x08]);
    out.extend_from_slice(b"gift");
    out
}

#[test]
fn a_learned_newer_writer_schema_is_read_with_its_new_field_skipped() {
    let codec = Codec::single_object();
    let message = v3_message(31);
    assert_eq!(codec.unknown_schema_id(&message), Some(31));
    assert!(matches!(
        codec.decode::<CartEvent>(&message),
        Err(Error::UnknownSchemaId(31))
    ));
    let learned = codec.learn(31, CART_EVENT_V3).unwrap();
    assert_eq!(learned.family(), "CartEvent");
    assert!(
        learned != SchemaRef::CartEventV2,
        "v3 is not a contract schema"
    );
    // Clones share what was learned.
    let clone = codec.clone();
    assert_eq!(clone.unknown_schema_id(&message), None);
    assert_eq!(clone.decode::<CartEvent>(&message).unwrap(), event());
    // The same bytes without the added field's value are too short for v3.
    assert!(
        codec
            .decode::<CartEvent>(&message[..message.len() - 6])
            .is_err()
    );
}

#[test]
fn a_registered_contract_schema_is_recognised_by_its_canonical_form() {
    let codec = Codec::single_object();
    let learned = codec.learn(8, SchemaRef::CartEventV1.avsc()).unwrap();
    assert!(learned == SchemaRef::CartEventV1);
    let v1 = confluent()
        .encode_as(&event(), SchemaRef::CartEventV1)
        .unwrap();
    let mut message = vec![0, 0, 0, 0, 8];
    message.extend_from_slice(&v1[5..]);
    let read = codec.decode::<CartEvent>(&message).unwrap();
    assert_eq!(read.event_id, event().event_id);
    assert_eq!(read.session_id, None, "v1 has no session");
}

#[test]
fn a_schema_outside_the_contract_is_refused_with_its_own_reason() {
    let codec = Codec::single_object();
    for text in [
        r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#,
        r#""string""#,
        "not json",
    ] {
        let e = codec.learn(5, text).unwrap_err();
        assert_eq!(e.reason(), "unsupported_schema", "{text}: {e}");
    }
    assert_eq!(codec.unknown_schema_id(&[0, 0, 0, 0, 5, 1]), Some(5));
    // A message read as the wrong family says which family it holds.
    codec.learn(6, CART_EVENT_V3).unwrap();
    assert!(matches!(
        codec.decode::<Product>(&v3_message(6)),
        Err(Error::UnexpectedSchema {
            expected: "Product",
            found: "CartEvent"
        })
    ));
}
