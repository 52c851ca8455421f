#!/usr/bin/env bash
# Runs the whole cartflow system on this machine, without Docker.
#
# Reuses PostgreSQL and a Kafka broker when they already answer at DATABASE_URL and
# KAFKA_BROKERS; otherwise installs PostgreSQL from the distribution's packages and Apache
# Kafka's jars from Maven Central (with Maven, once, into ~/.cache/cartflow), and starts them:
# Kafka as a single KRaft node with its log in .run/kafka. With SCHEMA_REGISTRY_URL set, also
# a schema registry there (Apicurio Registry, built once from Maven Central) if none answers.
# Then builds the services (release), migrates the database and starts
# the consumer, projector, outbox relay, gateway, producer and the example recovery
# subscriber (cartflow-recover, its messages in .run/recover.log), and Prometheus
# (installed from the distribution's packages when missing) scraping them with
# deploy/prometheus's alert rules, with logs and pid files under .run/.
#
# Usage: deploy/local/run.sh [--detach]
#   (foreground)  Ctrl-C stops every process this script started.
#   --detach      leave everything running; deploy/local/stop.sh stops it.
#
# Environment: DATABASE_URL, KAFKA_BROKERS, CARTFLOW_GATEWAY_ADDR (127.0.0.1:8080),
# CARTFLOW_RATE (20 events/s), CARTFLOW_BACKFILL_DAYS (7), CARTFLOW_CUSTOMERS (100),
# CARTFLOW_BUILD_PROFILE (release or dev), CARTFLOW_PROMETHEUS_ADDR (127.0.0.1:9090; "off" to
# run without Prometheus), CARTFLOW_KAFKA_VERSION (4.1.1),
# CARTFLOW_KAFKA_HOME (where the jars are kept), CARTFLOW_KAFKA_HEAP (-Xms256m -Xmx1g),
# and any other flag's variable (see each binary's --help).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DETACH=0
for arg in "$@"; do
  case "$arg" in
    --detach|-d) DETACH=1 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "Unknown argument $arg (usage: deploy/local/run.sh [--detach])" ;;
  esac
done

GATEWAY_ADDR="${CARTFLOW_GATEWAY_ADDR:-127.0.0.1:8080}"
PROMETHEUS_ADDR="${CARTFLOW_PROMETHEUS_ADDR:-127.0.0.1:9090}"
PROFILE="${CARTFLOW_BUILD_PROFILE:-release}"
# The services only: the bench runner (and the test crate it links) is built by its own
# `cargo run --release -p cartflow-bench`.
SERVICES=(-p cartflow-consumer -p cartflow-projector -p cartflow-producer -p cartflow-gateway -p cartflow-recover)
case "$PROFILE" in
  release) BIN="$ROOT/target/release"; BUILD=(cargo build --release "${SERVICES[@]}" --bins) ;;
  dev) BIN="$ROOT/target/debug"; BUILD=(cargo build "${SERVICES[@]}" --bins) ;;
  *) die "CARTFLOW_BUILD_PROFILE must be release or dev, not $PROFILE" ;;
esac

mkdir -p "$RUN_DIR"
SERVICES=(consumer projector relay recover gateway producer)
running=()
for name in "${SERVICES[@]}"; do
  if pid_alive "$name"; then
    running+=("$name")
  fi
done
if [ ${#running[@]} -gt 0 ]; then
  say "cartflow is already running (${running[*]}); dashboard at http://$GATEWAY_ADDR/"
  say "Stop it with deploy/local/stop.sh"
  exit 0
fi

ensure_build_tools
ensure_postgres
ensure_kafka
# With SCHEMA_REGISTRY_URL set the producer registers its schemas and writes the Confluent
# framing, and the consumer resolves ids there; a local one is started if none answers.
if [ -n "${SCHEMA_REGISTRY_URL:-}" ]; then ensure_registry "$SCHEMA_REGISTRY_URL"; fi
[ "$PROMETHEUS_ADDR" = off ] || ensure_prometheus

say "Building the services (${BUILD[*]})"
"${BUILD[@]}" || die "The build failed (above)."

say "Migrating the database"
"$BIN/cartflow-consumer" migrate >"$RUN_DIR/migrate.log" 2>&1 \
  || { cat "$RUN_DIR/migrate.log" >&2; die "Migration failed."; }

start() { # name binary args...
  local name=$1; shift
  setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

stop_all() {
  trap - INT TERM EXIT
  say "Stopping"
  for name in prometheus producer gateway recover relay projector consumer; do stop_pidfile "$name"; done
  stop_registry
  stop_broker
}

if [ "$DETACH" = 0 ]; then trap stop_all INT TERM EXIT; fi

say "Starting the consumer, projector, relay, recovery subscriber and gateway"
start consumer "$BIN/cartflow-consumer" --skip-migrations --metrics-addr 127.0.0.1:9102
start projector "$BIN/cartflow-projector" --metrics-addr 127.0.0.1:9103
start relay "$BIN/cartflow-projector" relay --metrics-addr 127.0.0.1:9104
start recover "$BIN/cartflow-recover" --metrics-addr 127.0.0.1:9105
start gateway "$BIN/cartflow-gateway" --listen "$GATEWAY_ADDR"
BACKFILL_DAYS="${CARTFLOW_BACKFILL_DAYS:-7}"
say "Starting the producer: $BACKFILL_DAYS days of history, then ${CARTFLOW_RATE:-20} events/s live"
start producer "$BIN/cartflow-producer" --metrics-addr 127.0.0.1:9101 backfill --days "$BACKFILL_DAYS" --then-live

# Every service answers /healthz once it is up; a service that exits is reported with its log.
healthy() { # host:port
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
    IFS= read -r status <&3
    [[ $status == *" 200 "* ]]' _ "$1" 2>/dev/null
}
for pair in consumer=127.0.0.1:9102 projector=127.0.0.1:9103 relay=127.0.0.1:9104 recover=127.0.0.1:9105 gateway=$GATEWAY_ADDR producer=127.0.0.1:9101; do
  name=${pair%%=*}; addr=${pair#*=}
  for ((i = 0; i < 600; i++)); do
    healthy "$addr" && break
    if ! pid_alive "$name"; then
      tail -n 20 "$RUN_DIR/$name.log" >&2
      die "$name exited during start-up (log: $RUN_DIR/$name.log)."
    fi
    sleep 0.1
  done
  healthy "$addr" || die "$name did not become healthy within 60 s (log: $RUN_DIR/$name.log)."
done

# Prometheus with the same alert rules as docker compose's; one already answering is reused.
PROMETHEUS_LINE="Prometheus  off (CARTFLOW_PROMETHEUS_ADDR=off)"
if [ "$PROMETHEUS_ADDR" != off ]; then
  if port_open "${PROMETHEUS_ADDR%:*}" "${PROMETHEUS_ADDR##*:}"; then
    say "Something answers at $PROMETHEUS_ADDR already; not starting Prometheus (point yours at deploy/prometheus/prometheus.local.yml)"
    PROMETHEUS_LINE="Prometheus  http://$PROMETHEUS_ADDR/ (already running; not started by run.sh)"
  else
    say "Starting Prometheus on $PROMETHEUS_ADDR (deploy/prometheus/prometheus.local.yml)"
    start prometheus prometheus \
      --config.file="$ROOT/deploy/prometheus/prometheus.local.yml" \
      --storage.tsdb.path="$RUN_DIR/prometheus-data" \
      --web.listen-address="$PROMETHEUS_ADDR"
    wait_port "${PROMETHEUS_ADDR%:*}" "${PROMETHEUS_ADDR##*:}" 30 \
      || { tail -n 20 "$RUN_DIR/prometheus.log" >&2; die "Prometheus did not start (log: $RUN_DIR/prometheus.log)."; }
    PROMETHEUS_LINE="Prometheus  http://$PROMETHEUS_ADDR/ (alerts: http://$PROMETHEUS_ADDR/alerts)"
  fi
fi

cat >&2 <<TXT

  cartflow is running.
    Dashboard   http://$GATEWAY_ADDR/
    Snapshot    http://$GATEWAY_ADDR/api/snapshot
    Metrics     http://127.0.0.1:9101/metrics (producer)  :9102 (consumer)  :9103 (projector)
                :9104 (relay)  :9105 (recover)  http://$GATEWAY_ADDR/metrics
    Outcomes    topic cart-outcomes; recovery messages in $RUN_DIR/recover.log
    $PROMETHEUS_LINE
    Logs, pids  $RUN_DIR/
TXT
if [ "$DETACH" = 1 ]; then
  say "Detached. Stop everything with deploy/local/stop.sh"
  exit 0
fi
say "Press Ctrl-C to stop everything"
# Wait until a service exits or the user presses Ctrl-C (the trap stops the rest).
while :; do
  for name in "${SERVICES[@]}"; do
    if ! pid_alive "$name"; then
      say "$name exited (log: $RUN_DIR/$name.log)"
      exit 1
    fi
  done
  sleep 1
done
