//! Thousands of random and mutated byte strings: decoding returns `Ok` or a typed error and
//! never panics, allocates wildly or hangs.

use cartflow_schemas::{
    Action, CartEvent, Codec, ConfluentIds, Customer, Error, Money, Product, SchemaRef,
};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

fn codec() -> Codec {
    let mut ids = ConfluentIds::default();
    ids.insert(1, SchemaRef::CartEventV1);
    ids.insert(2, SchemaRef::CartEventV2);
    Codec::new(cartflow_schemas::WireFormat::SingleObject, ids)
}

fn valid_messages() -> Vec<Vec<u8>> {
    let e = CartEvent {
        event_id: Uuid::from_u128(7),
        customer_id: 3,
        product_id: 4,
        product_title: "Mens Cotton Jacket".into(),
        product_price: Money::from_cents(5_599),
        product_image: "img".into(),
        action: Action::PurchaseCart,
        description: "bought".into(),
        timestamp: Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap(),
        session_id: Some("s".into()),
        user_agent: None,
        ip_address: Some("10.0.0.1".parse().unwrap()),
    };
    let c = codec();
    let mut ids = ConfluentIds::default();
    ids.insert(2, SchemaRef::CartEventV2);
    vec![
        c.encode(&e).unwrap(),
        c.encode_as(&e, SchemaRef::CartEventV1).unwrap(),
        Codec::confluent(ids).encode(&e).unwrap(),
    ]
}

fn assert_no_panic(result: Result<impl std::fmt::Debug, Error>) {
    if let Err(Error::InvalidBody(msg)) = &result {
        assert!(!msg.contains("panicked"), "the decoder panicked");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let c = codec();
        assert_no_panic(c.decode::<CartEvent>(&bytes));
        assert_no_panic(c.decode::<Customer>(&bytes));
        assert_no_panic(c.decode::<Product>(&bytes));
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        which in 0usize..3,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let header_len = if which == 2 { 5 } else { 10 };
        let mut bytes = valid_messages()[which][..header_len].to_vec();
        bytes.extend_from_slice(&body);
        assert_no_panic(codec().decode::<CartEvent>(&bytes));
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut bytes = valid_messages()[which].clone();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        bytes.extend_from_slice(&extra);
        assert_no_panic(codec().decode::<CartEvent>(&bytes));
    }
}
