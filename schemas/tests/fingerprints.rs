//! The contract's single-object framing against an independent Avro implementation, fastavro
//! (Python): the same Parsing Canonical Form and CRC-64-AVRO fingerprint for every schema,
//! events fastavro writes decode here field for field, and events written here decode there.
//! Messages with the legacy fingerprints cartflow wrote before still decode.

use std::io::Write;
use std::process::{Command, Stdio};

use cartflow_schemas::canonical::parsing_canonical_form;
use cartflow_schemas::{Action, CartEvent, Codec, Contract, Money, SchemaRef};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

/// Runs `script` with python3 and fastavro, `input` on its standard input; its output.
fn fastavro(script: &str, input: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the fingerprint tests compare with fastavro)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fastavro failed: {stderr}\n(deploy/local/test.sh installs it: python3 -m pip install fastavro)"
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

const FILES: [(SchemaRef, &str); 5] = [
    (SchemaRef::Product, "product"),
    (SchemaRef::Customer, "customer"),
    (SchemaRef::CartEventV1, "cart_event_v1"),
    (SchemaRef::CartEventV2, "cart_event_v2"),
    (SchemaRef::CartOutcome, "cart_outcome"),
];

fn avsc_dir() -> String {
    format!("{}/avro", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_schema_has_fastavros_canonical_form_and_fingerprint() {
    let out = fastavro(
        r#"
import json, sys
from fastavro.schema import to_parsing_canonical_form, fingerprint
for name in sys.argv[1:] if len(sys.argv) > 1 else ["product", "customer", "cart_event_v1", "cart_event_v2", "cart_outcome"]:
    schema = json.load(open(f"AVSC/{name}.avsc"))
    form = to_parsing_canonical_form(schema)
    fp = int.from_bytes(bytes.fromhex(fingerprint(form, "CRC-64-AVRO")), "little")
    print(name, fp, form)
"#
        .replace("AVSC", &avsc_dir())
        .as_str(),
        b"",
    );
    let contract = Contract::get();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), FILES.len(), "{out}");
    for ((schema, file), line) in FILES.iter().zip(lines) {
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some(*file));
        let fp: u64 = parts.next().expect("fp").parse().expect("number");
        let form = parts.next().expect("form");
        assert_eq!(
            parsing_canonical_form(schema.avsc()).expect("form"),
            form,
            "{schema}: canonical form"
        );
        assert_eq!(contract.fingerprint(*schema), fp, "{schema}: fingerprint");
        assert_ne!(
            contract.legacy_fingerprint(*schema),
            fp,
            "{schema}: the legacy fingerprint is apache-avro's, not the specification's"
        );
    }
}

fn sample() -> CartEvent {
    CartEvent {
        event_id: Uuid::parse_str("6f1c2a4e-93b1-4c1e-9a55-2f7f0d7c1b11").expect("uuid"),
        customer_id: 42,
        product_id: 9,
        product_title: "WD 2TB Elements Portable External Hard Drive - USB 3.0".into(),
        product_price: Money::from_cents(6_400),
        product_image: "https://fakestoreapi.com/img/61IBBVJvSDL._AC_SY879_.jpg".into(),
        action: Action::PurchaseCart,
        description: "bought".into(),
        timestamp: Utc
            .timestamp_millis_opt(1_764_460_800_123)
            .single()
            .expect("time"),
        session_id: Some("s-1".into()),
        user_agent: None,
        ip_address: Some("2001:db8::1".parse().expect("ip")),
    }
}

/// fastavro writes a v2 CartEvent in single-object framing with its own fingerprint; the
/// codec reads every field.
#[test]
fn an_event_fastavro_writes_decodes_field_for_field() {
    let out = fastavro(
        r#"
import io, json, uuid, decimal, datetime, sys
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form, fingerprint
raw = json.load(open("AVSC/cart_event_v2.avsc"))
fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
buf = io.BytesIO()
buf.write(b"\xc3\x01" + fp)
schemaless_writer(buf, parse_schema(raw), {
    "event_id": "6f1c2a4e-93b1-4c1e-9a55-2f7f0d7c1b11",
    "customer_id": 42, "product_id": 9,
    "product_title": "WD 2TB Elements Portable External Hard Drive - USB 3.0",
    "product_price": decimal.Decimal("64.00"),
    "product_image": "https://fakestoreapi.com/img/61IBBVJvSDL._AC_SY879_.jpg",
    "action": "purchase_cart", "description": "bought",
    "timestamp": datetime.datetime(2025, 11, 30, 0, 0, 0, 123000, tzinfo=datetime.timezone.utc),
    "session_id": "s-1", "user_agent": None, "ip_address": "2001:db8::1",
})
print(buf.getvalue().hex())
"#
        .replace("AVSC", &avsc_dir())
        .as_str(),
        b"",
    );
    let bytes: Vec<u8> = (0..out.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&out.trim()[i..i + 2], 16).expect("hex"))
        .collect();
    let codec = Codec::single_object();
    assert_eq!(
        codec.writer_schema(&bytes).expect("header"),
        SchemaRef::CartEventV2
    );
    assert!(!Codec::has_legacy_fingerprint(&bytes));
    let event: CartEvent = codec.decode(&bytes).expect("decode fastavro's event");
    assert_eq!(event, sample());
}

/// The codec writes a v2 CartEvent; fastavro checks the fingerprint against its own and reads
/// the body.
#[test]
fn an_event_written_here_decodes_in_fastavro() {
    let bytes = Codec::single_object().encode(&sample()).expect("encode");
    let out = fastavro(
        r#"
import io, json, sys
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import to_parsing_canonical_form, fingerprint
raw = json.load(open("AVSC/cart_event_v2.avsc"))
data = sys.stdin.buffer.read()
assert data[:2] == b"\xc3\x01", data[:2]
assert data[2:10] == bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO")), "fingerprint"
record = schemaless_reader(io.BytesIO(data[10:]), parse_schema(raw))
print(json.dumps({k: str(v) for k, v in record.items()}, sort_keys=True))
"#
        .replace("AVSC", &avsc_dir())
        .as_str(),
        &bytes,
    );
    let record: std::collections::BTreeMap<String, String> =
        serde_json::from_str(out.trim()).expect("json");
    assert_eq!(record["event_id"], "6f1c2a4e-93b1-4c1e-9a55-2f7f0d7c1b11");
    assert_eq!(record["customer_id"], "42");
    assert_eq!(record["product_price"], "64.00");
    assert_eq!(record["action"], "purchase_cart");
    assert_eq!(record["timestamp"], "2025-11-30 00:00:00.123000+00:00");
    assert_eq!(record["session_id"], "s-1");
    assert_eq!(record["user_agent"], "None");
    assert_eq!(record["ip_address"], "2001:db8::1");
}

/// Topics written before the change carry apache-avro's fingerprints: they still decode, and
/// are recognised as legacy.
#[test]
fn messages_with_the_legacy_fingerprint_still_decode() {
    let contract = Contract::get();
    let mut bytes = Codec::single_object().encode(&sample()).expect("encode");
    bytes[2..10].copy_from_slice(
        &contract
            .legacy_fingerprint(SchemaRef::CartEventV2)
            .to_le_bytes(),
    );
    assert!(Codec::has_legacy_fingerprint(&bytes));
    let event: CartEvent = Codec::single_object()
        .decode(&bytes)
        .expect("decode a legacy message");
    assert_eq!(event, sample());
}
