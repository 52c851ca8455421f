//! Prints each schema's single-object fingerprint (the specification's, which the encoder
//! writes) and the legacy one (apache-avro 0.21's, still read), as the 8 header bytes.
//!
//! `cargo run -p cartflow-schemas --example fingerprints`

use cartflow_schemas::{Contract, SchemaRef};

fn main() {
    let c = Contract::get();
    println!("schema        spec (header bytes)  legacy (header bytes)");
    for s in SchemaRef::ALL {
        let hex = |fp: u64| -> String {
            fp.to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        println!(
            "{:<13} {}     {}",
            s.name(),
            hex(c.fingerprint(s)),
            hex(c.legacy_fingerprint(s))
        );
    }
}
