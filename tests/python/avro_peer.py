"""An independent Avro peer for cartflow's interop tests: fastavro writes and reads cartflow's
messages in both framings, single-object (C3 01, the specification's CRC-64-AVRO fingerprint
of the Parsing Canonical Form, little-endian) and Confluent (00, a 4-byte big-endian registry
id).

    avro_peer.py write SCHEMA.avsc single-object       < records.jsonl > messages.hex
    avro_peer.py write SCHEMA.avsc confluent ID        < records.jsonl > messages.hex
    avro_peer.py read  SCHEMA.avsc                     < messages.hex  > records.jsonl

Records are JSON, one per line, with the price as a decimal string and the timestamp in
milliseconds since the epoch; messages are hex, one per line. `read` reports each message's
framing and its fingerprint or id beside the record.
"""

import datetime
import decimal
import io
import json
import sys

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def spec_fingerprint(schema_json):
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema_json), "CRC-64-AVRO"))


def to_avro(record):
    r = dict(record)
    r["product_price"] = decimal.Decimal(r["product_price"])
    r["timestamp"] = EPOCH + datetime.timedelta(milliseconds=r["timestamp"])
    return r


def from_avro(record):
    r = dict(record)
    r["product_price"] = str(r["product_price"])
    r["timestamp"] = (r["timestamp"] - EPOCH) // datetime.timedelta(milliseconds=1)
    r["event_id"] = str(r["event_id"])
    return r


def write(schema_path, framing, schema_id=None):
    schema_json = json.load(open(schema_path))
    parsed = parse_schema(schema_json)
    if framing == "single-object":
        header = b"\xc3\x01" + spec_fingerprint(schema_json)
    elif framing == "confluent":
        header = b"\x00" + int(schema_id).to_bytes(4, "big")
    else:
        sys.exit(f"unknown framing {framing!r}: single-object or confluent")
    for line in sys.stdin:
        if line.strip():
            buf = io.BytesIO()
            buf.write(header)
            schemaless_writer(buf, parsed, to_avro(json.loads(line)))
            print(buf.getvalue().hex())


def read(schema_path):
    schema_json = json.load(open(schema_path))
    parsed = parse_schema(schema_json)
    for line in sys.stdin:
        if not line.strip():
            continue
        data = bytes.fromhex(line.strip())
        if data[:2] == b"\xc3\x01":
            meta = {"framing": "single-object", "fingerprint_ok": data[2:10] == spec_fingerprint(schema_json)}
            body = data[10:]
        elif data[:1] == b"\x00":
            meta = {"framing": "confluent", "id": int.from_bytes(data[1:5], "big")}
            body = data[5:]
        else:
            sys.exit(f"not a cartflow message: {data[:10].hex()}")
        stream = io.BytesIO(body)
        record = from_avro(schemaless_reader(stream, parsed))
        meta["trailing_bytes"] = len(body) - stream.tell()
        print(json.dumps({"meta": meta, "record": record}, sort_keys=True))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"write": write, "read": read}[command](*args)
