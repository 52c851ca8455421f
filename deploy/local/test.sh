#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and a real Kafka broker.
#
# Brings up the same dependencies as run.sh (reusing what already answers at DATABASE_URL and
# KAFKA_BROKERS, installing PostgreSQL or Apache Kafka when missing), Chromium for the browser test,
# Prometheus and docker-compose for the deployment tests, fastavro for the contract's, and a
# schema registry (Apicurio Registry, built from Maven Central) for the registry tests, then
# checks formatting and lints, and runs `cargo test --workspace`. A broker or registry it
# started is stopped at exit.
#
# Usage: deploy/local/test.sh [extra cargo test arguments]

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

cleanup() { stop_broker; stop_registry; }
trap cleanup EXIT

ensure_build_tools
ensure_chromium
ensure_prometheus
ensure_compose
ensure_python_peers
ensure_postgres
ensure_kafka
# The registry tests' own registry, named by a variable of their own: SCHEMA_REGISTRY_URL
# would switch every other test's producer to the registry's framing.
export CARTFLOW_TEST_REGISTRY_URL="${CARTFLOW_TEST_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v6}"
ensure_registry "$CARTFLOW_TEST_REGISTRY_URL"

say "Checking formatting (cargo fmt --check)"
cargo fmt --all -- --check || die "Formatting differs: run cargo fmt --all."
say "Linting (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings || die "clippy found problems (above)."
say "Checking the API docs' links (cargo doc)"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links" \
  cargo doc --workspace --no-deps --quiet || die "cargo doc found broken links (above)."
say "Running the tests"
log="$RUN_DIR/test.log"
mkdir -p "$RUN_DIR"
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary, so the total is not lost among cargo's per-binary
# summaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
[ "$status" = 0 ] || die "Tests failed (full output: $log)."
say "All tests passed"
