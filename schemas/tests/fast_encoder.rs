//! The hand-written cart event and cart outcome writers produce exactly apache-avro's bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use apache_avro::to_avro_datum;
use cartflow_schemas::{
    Action, CartEvent, CartOutcome, Codec, Contract, Money, OutcomeItem, OutcomeKind, Record,
    SchemaRef,
};
use chrono::DateTime;
use proptest::prelude::*;
use uuid::Uuid;

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::AddToCart),
        Just(Action::RemoveFromCart),
        Just(Action::PurchaseCart)
    ]
}

fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<u32>().prop_map(|v| Some(IpAddr::V4(Ipv4Addr::from(v)))),
        any::<u128>().prop_map(|v| Some(IpAddr::V6(Ipv6Addr::from(v)))),
    ]
}

prop_compose! {
    fn event()(
        id in any::<u128>(),
        customer_id in any::<i64>(),
        product_id in any::<i64>(),
        title in ".{0,80}",
        cents in any::<i64>(),
        image in ".{0,40}",
        action in action(),
        description in ".{0,200}",
        millis in -8_000_000_000_000i64..8_000_000_000_000,
        session_id in proptest::option::of("[a-f0-9-]{0,36}"),
        user_agent in proptest::option::of(".{0,120}"),
        ip_address in ip(),
    ) -> CartEvent {
        CartEvent {
            event_id: Uuid::from_u128(id),
            customer_id,
            product_id,
            product_title: title,
            product_price: Money::from_cents(cents),
            product_image: image,
            action,
            description,
            timestamp: DateTime::from_timestamp_millis(millis).unwrap(),
            session_id,
            user_agent,
            ip_address,
        }
    }
}

fn kind() -> impl Strategy<Value = OutcomeKind> {
    prop_oneof![
        Just(OutcomeKind::Purchased),
        Just(OutcomeKind::Abandoned),
        Just(OutcomeKind::Emptied),
        Just(OutcomeKind::Reopened)
    ]
}

prop_compose! {
    fn item()(product_id in any::<i64>(), quantity in any::<i32>(), cents in any::<i64>()) -> OutcomeItem {
        OutcomeItem { product_id, quantity, unit_price: Money::from_cents(cents) }
    }
}

prop_compose! {
    fn outcome()(
        id in any::<u128>(),
        cart_key in ".{0,60}",
        customer_id in any::<i64>(),
        outcome in kind(),
        sequence in any::<i32>(),
        items in proptest::collection::vec(item(), 0..70),
        cents in any::<i64>(),
        millis in proptest::array::uniform3(-8_000_000_000_000i64..8_000_000_000_000),
        event_ids in proptest::collection::vec(any::<u128>(), 0..70),
    ) -> CartOutcome {
        let t = |ms| DateTime::from_timestamp_millis(ms).unwrap();
        CartOutcome {
            outcome_id: Uuid::from_u128(id),
            cart_key,
            customer_id,
            outcome,
            sequence,
            items,
            value: Money::from_cents(cents),
            first_event_at: t(millis[0]),
            last_event_at: t(millis[1]),
            decided_at: t(millis[2]),
            event_ids: event_ids.into_iter().map(Uuid::from_u128).collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn same_bytes_as_apache_avro(e in event()) {
        let codec = Codec::single_object();
        for schema in [SchemaRef::CartEventV1, SchemaRef::CartEventV2] {
            let reference = to_avro_datum(Contract::get().schema(schema), e.to_avro(schema)).unwrap();
            let ours = codec.encode_as(&e, schema).unwrap();
            prop_assert_eq!(&ours[10..], &reference[..]);
            let back = codec.decode::<CartEvent>(&ours).unwrap();
            prop_assert_eq!(back.event_id, e.event_id);
            prop_assert_eq!(back.product_price, e.product_price);
        }
    }

    #[test]
    fn outcomes_same_bytes_as_apache_avro(o in outcome()) {
        let codec = Codec::single_object();
        let schema = SchemaRef::CartOutcome;
        let reference = to_avro_datum(Contract::get().schema(schema), o.to_avro(schema)).unwrap();
        let ours = codec.encode(&o).unwrap();
        prop_assert_eq!(&ours[10..], &reference[..]);
        prop_assert_eq!(codec.decode::<CartOutcome>(&ours).unwrap(), o);
    }
}
