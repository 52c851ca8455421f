//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO fingerprint, written
//! from the specification rather than taken from apache-avro.
//!
//! apache-avro 0.21's `canonical_form()` departs from the specification (upstream AVRO-4004):
//! a type with a logical type stays an object (`{"type":"string"}` for a uuid) instead of the
//! primitive's name, and a decimal keeps `precision` and `scale`, which \[STRIP\] removes. Its
//! fingerprints therefore differ from every spec-following implementation's (Java's
//! `SchemaNormalization.parsingFingerprint64`, fastavro), and single-object messages could not
//! cross between them. The old fingerprints are still accepted on reading, as legacy
//! ([`crate::Contract::legacy_fingerprint`]).
//!
//! The transformations, in the specification's words: \[PRIMITIVES\] primitive schemas in their
//! simple form; \[FULLNAMES\] short names replaced by full names, namespaces dropped; \[STRIP\]
//! only `type`, `name`, `fields`, `symbols`, `items`, `values`, `size` kept; \[ORDER\] in that
//! order; \[STRINGS\] escapes replaced by their UTF-8 characters; \[INTEGERS\] no quotes or leading
//! zeros; \[WHITESPACE\] none outside strings.

use serde_json::Value;

/// Why a schema text has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Avro schema: {0}")]
pub struct NotASchema(String);

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of the schema in `text` (JSON).
pub fn parsing_canonical_form(text: &str) -> Result<String, NotASchema> {
    let value: Value = serde_json::from_str(text).map_err(|e| NotASchema(e.to_string()))?;
    let mut out = String::new();
    write_schema(&value, None, &mut out)?;
    Ok(out)
}

/// CRC-64-AVRO (the specification's 64-bit Rabin fingerprint) of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            }
            fp
        })
    });
    bytes.iter().fold(EMPTY, |fp, b| {
        (fp >> 8) ^ table[((fp ^ u64::from(*b)) & 0xff) as usize]
    })
}

/// The fingerprint single-object encoding puts (little-endian) before each body.
pub fn parsing_fingerprint64(text: &str) -> Result<u64, NotASchema> {
    Ok(crc64_avro(parsing_canonical_form(text)?.as_bytes()))
}

fn write_schema(v: &Value, namespace: Option<&str>, out: &mut String) -> Result<(), NotASchema> {
    match v {
        Value::String(name) => {
            if PRIMITIVES.contains(&name.as_str()) {
                write_str(name, out);
            } else {
                write_str(&full_name(name, namespace), out);
            }
            Ok(())
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(b, namespace, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(o) => {
            let kind = o
                .get("type")
                .ok_or_else(|| NotASchema(format!("an object without \"type\": {v}")))?;
            let Value::String(kind) = kind else {
                // {"type": {...}} or {"type": [...]}: the inner schema is the schema.
                return write_schema(kind, namespace, out);
            };
            match kind.as_str() {
                k if PRIMITIVES.contains(&k) => {
                    write_str(k, out);
                    Ok(())
                }
                "record" | "error" | "enum" | "fixed" => write_named(o, kind, namespace, out),
                "array" => {
                    out.push_str(r#"{"type":"array","items":"#);
                    write_schema(member(o, "items")?, namespace, out)?;
                    out.push('}');
                    Ok(())
                }
                "map" => {
                    out.push_str(r#"{"type":"map","values":"#);
                    write_schema(member(o, "values")?, namespace, out)?;
                    out.push('}');
                    Ok(())
                }
                // A reference to a named type, written as {"type": "io.cartflow.Money"}.
                other => {
                    write_str(&full_name(other, namespace), out);
                    Ok(())
                }
            }
        }
        other => Err(NotASchema(format!("unexpected {other}"))),
    }
}

fn write_named(
    o: &serde_json::Map<String, Value>,
    kind: &str,
    namespace: Option<&str>,
    out: &mut String,
) -> Result<(), NotASchema> {
    let name = member(o, "name")?
        .as_str()
        .ok_or_else(|| NotASchema("a name that is not a string".into()))?;
    let own_namespace = o.get("namespace").and_then(Value::as_str).or(namespace);
    let full = full_name(name, own_namespace);
    // Names inside take the namespace of the full name (the spec's "enclosing namespace").
    let inner = full.rsplit_once('.').map(|(ns, _)| ns);
    out.push_str(r#"{"name":"#);
    write_str(&full, out);
    out.push_str(r#","type":"#);
    write_str(kind, out);
    match kind {
        "record" | "error" => {
            out.push_str(r#","fields":["#);
            let fields = member(o, "fields")?
                .as_array()
                .ok_or_else(|| NotASchema("fields that are not an array".into()))?;
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let f = f
                    .as_object()
                    .ok_or_else(|| NotASchema("a field that is not an object".into()))?;
                out.push_str(r#"{"name":"#);
                write_str(
                    member(f, "name")?
                        .as_str()
                        .ok_or_else(|| NotASchema("a field name that is not a string".into()))?,
                    out,
                );
                out.push_str(r#","type":"#);
                write_schema(member(f, "type")?, inner, out)?;
                out.push('}');
            }
            out.push(']');
        }
        "enum" => {
            out.push_str(r#","symbols":["#);
            let symbols = member(o, "symbols")?
                .as_array()
                .ok_or_else(|| NotASchema("symbols that are not an array".into()))?;
            for (i, s) in symbols.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(
                    s.as_str()
                        .ok_or_else(|| NotASchema("a symbol that is not a string".into()))?,
                    out,
                );
            }
            out.push(']');
        }
        _ => {
            // [INTEGERS]: the size as a plain number, whether written "015" or 15.
            let size = match member(o, "size")? {
                Value::Number(n) => n.as_u64().ok_or_else(|| NotASchema(format!("size {n}")))?,
                Value::String(s) => s
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| NotASchema(format!("size {s:?}")))?,
                other => return Err(NotASchema(format!("size {other}"))),
            };
            out.push_str(&format!(r#","size":{size}"#));
        }
    }
    out.push('}');
    Ok(())
}

fn member<'a>(o: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a Value, NotASchema> {
    o.get(key)
        .ok_or_else(|| NotASchema(format!("missing \"{key}\"")))
}

/// A name with a dot is already full; otherwise it takes the namespace, when there is one.
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

/// A JSON string with only `"` and `\` (and control characters) escaped: \[STRINGS\] wants
/// every other character as itself, in UTF-8.
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own examples: inputs, canonical forms and fingerprints (as Java's
    /// signed longs) from Avro's share/test/data/schema-tests.txt, cases 000 to 033.
    const SPEC: &[(&str, &str, Option<i64>)] = &[
        (r#""null""#, r#""null""#, Some(7195948357588979594)),
        (r#"{"type":"null"}"#, r#""null""#, None),
        (r#""boolean""#, r#""boolean""#, Some(-6970731678124411036)),
        (r#"{"type":"boolean"}"#, r#""boolean""#, None),
        (r#""int""#, r#""int""#, Some(8247732601305521295)),
        (r#"{"type":"int"}"#, r#""int""#, None),
        (r#""long""#, r#""long""#, Some(-3434872931120570953)),
        (r#"{"type":"long"}"#, r#""long""#, None),
        (r#""float""#, r#""float""#, Some(5583340709985441680)),
        (r#"{"type":"float"}"#, r#""float""#, None),
        (r#""double""#, r#""double""#, Some(-8181574048448539266)),
        (r#"{"type":"double"}"#, r#""double""#, None),
        (r#""bytes""#, r#""bytes""#, Some(5746618253357095269)),
        (r#"{"type":"bytes"}"#, r#""bytes""#, None),
        (r#""string""#, r#""string""#, Some(-8142146995180207161)),
        (r#"{"type":"string"}"#, r#""string""#, None),
        ("[  ]", "[]", Some(-1241056759729112623)),
        (r#"[ "int"  ]"#, r#"["int"]"#, Some(-5232228896498058493)),
        (
            r#"[ "int" , {"type":"boolean"} ]"#,
            r#"["int","boolean"]"#,
            Some(5392556393470105090),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            Some(-4824392279771201922),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
            r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
            Some(5916914534497305771),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
            r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
            Some(-4616218487480524110),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"Useful info"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            Some(-4824392279771201922),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            Some(-4824392279771201922),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            Some(-4824392279771201922),
        ),
        (
            r#"{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}"#,
            Some(7843277075252814651),
        ),
        (
            r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},
                 {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
               "type":"record", "name":"foo" }"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
            Some(-4860222112080293046),
        ),
        (
            r#"{"type":"enum", "name":"foo", "symbols":["A1"]}"#,
            r#"{"name":"foo","type":"enum","symbols":["A1"]}"#,
            Some(-6342190197741309591),
        ),
        (
            r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
            r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
            Some(-4448647247586288245),
        ),
        (
            r#"{"name":"foo","type":"fixed","size":15}"#,
            r#"{"name":"foo","type":"fixed","size":15}"#,
            Some(1756455273707447556),
        ),
        (
            r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
            r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
            Some(-3064184465700546786),
        ),
        (
            r#"{ "items":{"type":"null"}, "type":"array"}"#,
            r#"{"type":"array","items":"null"}"#,
            Some(-589620603366471059),
        ),
        (
            r#"{ "values":"string", "type":"map"}"#,
            r#"{"type":"map","values":"string"}"#,
            Some(-8732877298790414990),
        ),
        (
            r#"{"name":"PigValue","type":"record",
                "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            Some(-1759257747318642341),
        ),
    ];

    #[test]
    fn the_specifications_examples_give_its_forms_and_fingerprints() {
        for (i, (input, canonical, fingerprint)) in SPEC.iter().enumerate() {
            let form = parsing_canonical_form(input).unwrap_or_else(|e| panic!("case {i:03}: {e}"));
            assert_eq!(form, *canonical, "case {i:03}");
            if let Some(fp) = fingerprint {
                assert_eq!(crc64_avro(form.as_bytes()) as i64, *fp, "case {i:03}");
            }
        }
    }

    #[test]
    fn logical_types_and_decimal_attributes_are_stripped() {
        let form = parsing_canonical_form(
            r#"{"type":"record","name":"E","namespace":"io.x","fields":[
                {"name":"id","type":{"type":"string","logicalType":"uuid"}},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"price","type":{"type":"fixed","name":"Money","size":8,
                    "logicalType":"decimal","precision":18,"scale":2}},
                {"name":"again","type":"Money"},
                {"name":"r","type":{"type":"record","name":"R","fields":[{"name":"m","type":"Money"}]}}]}"#,
        )
        .expect("form");
        assert_eq!(
            form,
            r#"{"name":"io.x.E","type":"record","fields":[{"name":"id","type":"string"},{"name":"at","type":"long"},{"name":"price","type":{"name":"io.x.Money","type":"fixed","size":8}},{"name":"again","type":"io.x.Money"},{"name":"r","type":{"name":"io.x.R","type":"record","fields":[{"name":"m","type":"io.x.Money"}]}}]}"#
        );
    }

    #[test]
    fn escapes_become_characters_and_sizes_plain_numbers() {
        assert_eq!(
            parsing_canonical_form(r#"{"type":"enum","name":"caf\u00e9","symbols":["A"]}"#)
                .expect("form"),
            r#"{"name":"café","type":"enum","symbols":["A"]}"#
        );
        assert_eq!(
            parsing_canonical_form(r#"{"type":"fixed","name":"f","size":"015"}"#).expect("form"),
            r#"{"name":"f","type":"fixed","size":15}"#
        );
    }
}
