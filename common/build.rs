//! Rebuilds the crate when a migration is added or changed: `embed_migrations!` reads
//! `migrations/` at compile time, and cargo does not know to look there by itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
