# Shared by run.sh, test.sh and stop.sh: finding, installing and starting what cartflow needs
# on one machine without Docker. Source it; do not run it.

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR="${CARTFLOW_RUN_DIR:-$ROOT/.run}"
KAFKA_VERSION="${CARTFLOW_KAFKA_VERSION:-4.1.1}"
KAFKA_HOME="${CARTFLOW_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/cartflow/kafka-$KAFKA_VERSION}"
KAFKA_HEAP_OPTS="${CARTFLOW_KAFKA_HEAP:--Xms256m -Xmx1g}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/cartflow"
REGISTRY_VERSION=2.4.2.Final # Apicurio Registry; see deploy/local/registry/pom.xml for why this one
REGISTRY_HEAP_OPTS="${CARTFLOW_REGISTRY_HEAP:--Xms64m -Xmx384m}"
# The defaults, from the one file the services' constants are checked against.
DEFAULTS=$(grep -E '^[A-Z_]+=' "$ROOT/deploy/local/defaults.env")
: "${DATABASE_URL:=$(sed -n 's/^DATABASE_URL=//p' <<<"$DEFAULTS")}"
: "${KAFKA_BROKERS:=$(sed -n 's/^KAFKA_BROKERS=//p' <<<"$DEFAULTS")}"
export DATABASE_URL KAFKA_BROKERS
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [ -t 2 ]; then BOLD=$'\033[1m'; RED=$'\033[31m'; OFF=$'\033[0m'; else BOLD=; RED=; OFF=; fi
say() { printf '%s==>%s %s\n' "$BOLD" "$OFF" "$*" >&2; }
die() { printf '%serror:%s %s\n' "$RED" "$OFF" "$*" >&2; exit 1; }
trap 'die "$(basename "$0") failed at line $LINENO: $BASH_COMMAND"' ERR

# Runs a command as root: directly, through sudo, or not at all.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1
  fi
}

# True when something accepts TCP connections at host:port (1 s timeout).
port_open() { timeout 1 bash -c ">/dev/tcp/$1/$2" 2>/dev/null; }

wait_port() { # host port seconds what
  local i
  for ((i = 0; i < $3 * 10; i++)); do port_open "$1" "$2" && return 0; sleep 0.1; done
  return 1
}

is_local() { case "$1" in 127.*|localhost|::1|\[::1\]) return 0 ;; *) return 1 ;; esac; }

# host and port of DATABASE_URL (postgres://user[:pw]@host[:port]/db?params)
db_host() { local h=${DATABASE_URL#*://}; h=${h#*@}; h=${h%%/*}; h=${h%%\?*}; echo "${h%:*}"; }
db_port() { local h=${DATABASE_URL#*://}; h=${h#*@}; h=${h%%/*}; h=${h%%\?*}; [[ $h == *:* ]] && echo "${h##*:}" || echo 5432; }
db_has_password() { local u=${DATABASE_URL#*://}; [[ $u == *@* ]] && u=${u%%@*} && [[ $u == *:* ]]; }
kafka_host() { local b=${KAFKA_BROKERS%%,*}; echo "${b%:*}"; }
kafka_port() { local b=${KAFKA_BROKERS%%,*}; echo "${b##*:}"; }

apt_install() {
  say "Installing $* from the distribution's packages"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself (this script knows Debian and Ubuntu)."
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    || die "apt-get update failed: run as root or with sudo, or install $* yourself."
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "Could not install $*: run as root or with sudo, or install them yourself."
}

# The C toolchain librdkafka (built by the rdkafka crate) needs.
ensure_build_tools() {
  local missing=()
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) first."
  # npm installs the dashboard's charting library once (gateway/build.rs).
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# Headless Chromium for the dashboard's browser test.
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

# Prometheus and promtool, for run.sh's local Prometheus and the observability tests.
ensure_prometheus() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || apt_install prometheus
}

# fastavro, the independent Avro implementation the contract's tests compare with.
ensure_python_peers() {
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -c 'import fastavro' 2>/dev/null && return
  say "Installing fastavro from PyPI (python3 -m pip install fastavro)"
  python3 -m pip install --quiet fastavro 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages fastavro \
    || die "Could not install fastavro: python3 -m pip install fastavro, then run again."
}

# docker-compose (1.29, the distribution's), whose `config` validates docker-compose.yml
# without a Docker engine.
ensure_compose() {
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
}

# PostgreSQL at DATABASE_URL: reused when it answers; otherwise installed from the
# distribution's packages (when missing) and started. The database itself is created by
# `cartflow-consumer migrate`.
ensure_postgres() {
  local host port
  host=$(db_host); port=$(db_port)
  if port_open "$host" "$port"; then
    say "PostgreSQL answers at $host:$port"
    return
  fi
  is_local "$host" || die "PostgreSQL at $host:$port does not answer, and it is not on this machine: start it, or point DATABASE_URL at a running server."
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local version conf
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  local cluster_port
  cluster_port=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' "$conf/postgresql.conf" | head -n 1)
  [ "${cluster_port:-5432}" = "$port" ] || die "The local PostgreSQL cluster listens on port ${cluster_port:-5432}, but DATABASE_URL says $port."
  if ! db_has_password && ! grep -q '^# cartflow: trust local TCP' "$conf/pg_hba.conf"; then
    # The default URL has no password: let local TCP connections in without one. This is a
    # development cluster on loopback only.
    say "Allowing password-less loopback connections in $conf/pg_hba.conf"
    as_root sed -i '1i # cartflow: trust local TCP\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf" \
      || die "Could not edit $conf/pg_hba.conf: run as root or with sudo."
  fi
  say "Starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  wait_port "$host" "$port" 30 || die "PostgreSQL did not start: see /var/log/postgresql/postgresql-$version-main.log"
  say "PostgreSQL answers at $host:$port"
}

# A Kafka broker at KAFKA_BROKERS: reused when it answers; otherwise Apache Kafka, started on
# this machine. (tansu was the broker here until it was found to lose data; see
# docs/architecture.md, "Apache Kafka is the reference broker".)
BROKER_STARTED=
REGISTRY_STARTED=
ensure_kafka() {
  local host port
  host=$(kafka_host); port=$(kafka_port)
  if port_open "$host" "$port"; then
    say "Kafka broker answers at $host:$port"
    return
  fi
  is_local "$host" || die "No Kafka broker answers at $host:$port, and it is not on this machine: start one, or point KAFKA_BROKERS at a running broker."
  start_apache_kafka "$host" "$port"
}

# Apache Kafka's jars (org.apache.kafka:kafka_2.13 and its dependencies) from Maven Central,
# fetched once by Maven into KAFKA_HOME (shared by every clone on this machine).
fetch_apache_kafka() {
  [ -f "$KAFKA_HOME/kafka_2.13-$KAFKA_VERSION.jar" ] && return
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install maven
  say "Fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central into $KAFKA_HOME"
  local tmp="$KAFKA_HOME.partial" log="${TMPDIR:-/tmp}/cartflow-kafka-fetch.log"
  rm -rf "$tmp"
  mvn -B -q -f "$ROOT/deploy/local/kafka/pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "Maven could not fetch Apache Kafka $KAFKA_VERSION (full log: $log)."; }
  mkdir -p "$(dirname "$KAFKA_HOME")"
  rm -rf "$KAFKA_HOME" && mv "$tmp" "$KAFKA_HOME"
}

# A single KRaft node (broker and controller in one process) with its log on disk in
# RUN_DIR/kafka, formatted on first start and kept across restarts.
start_apache_kafka() {
  local host=$1 port=$2 controller_port=${CARTFLOW_KAFKA_CONTROLLER_PORT:-$(($2 + 1))} dir="$RUN_DIR/kafka"
  fetch_apache_kafka
  mkdir -p "$dir/data"
  sed -e "s|@HOST@|$host|g" -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
      -e "s|@LOG_DIR@|$dir/data|g" "$ROOT/deploy/local/kafka/server.properties" >"$dir/server.properties"
  local java=(java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true
              "-Dlog4j2.configurationFile=$ROOT/deploy/local/kafka/log4j2.yaml" -cp "$KAFKA_HOME/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    say "Formatting a new Kafka log in $dir/data"
    "${java[@]}" kafka.tools.StorageTool format --ignore-formatted \
        -t "$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
        -c "$dir/server.properties" >"$RUN_DIR/kafka-format.log" 2>&1 \
      || { tail -n 20 "$RUN_DIR/kafka-format.log" >&2; die "Formatting the Kafka log failed (log: $RUN_DIR/kafka-format.log)."; }
  fi
  say "Starting Apache Kafka $KAFKA_VERSION on $host:$port (controller on $controller_port, log in $dir/data)"
  # setsid: a Ctrl-C in this terminal is for run.sh to handle, not for the broker.
  setsid "${java[@]}" kafka.Kafka "$dir/server.properties" >"$RUN_DIR/kafka.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/kafka.pid"
  BROKER_STARTED=kafka
  # The broker-restart fault test records the pid of the broker it starts again here.
  export CARTFLOW_BROKER_PIDFILE="$RUN_DIR/kafka.pid"
  wait_port "$host" "$port" 60 || { tail -n 20 "$RUN_DIR/kafka.log" >&2; die "Kafka did not start (log: $RUN_DIR/kafka.log)."; }
  say "Kafka broker (Apache Kafka $KAFKA_VERSION) answers at $host:$port"
}

# Stops the broker this script started, if any.
stop_broker() { if [ -n "${BROKER_STARTED:-}" ]; then stop_pidfile "$BROKER_STARTED"; fi; }

url_host() { local h=${1#*://}; h=${h%%/*}; echo "${h%:*}"; }
url_port() { local h=${1#*://}; h=${h%%/*}; [[ $h == *:* ]] && echo "${h##*:}" || echo 80; }

# Builds Apicurio Registry's runnable jar from Maven Central, once for each version of
# deploy/local/registry (the folder's hash names the cache), and sets REGISTRY_HOME.
fetch_registry() {
  local src="$ROOT/deploy/local/registry" key tmp log="${TMPDIR:-/tmp}/cartflow-registry-build.log"
  key=$(cd "$src" && find . -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)
  REGISTRY_HOME="${CARTFLOW_REGISTRY_HOME:-$CACHE_DIR/apicurio-registry-$REGISTRY_VERSION-$key}"
  [ -f "$REGISTRY_HOME/target/registry-1-runner.jar" ] && return
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install maven
  say "Building Apicurio Registry $REGISTRY_VERSION from Maven Central into $REGISTRY_HOME (once)"
  tmp="$REGISTRY_HOME.partial"
  rm -rf "$tmp" && mkdir -p "$(dirname "$tmp")" && cp -r "$src" "$tmp"
  mvn -B -q -f "$tmp/pom.xml" package -DskipTests >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "Maven could not build Apicurio Registry (full log: $log)."; }
  rm -rf "$REGISTRY_HOME" && mv "$tmp" "$REGISTRY_HOME"
}

# A Confluent-compatible schema registry answering at URL (its Confluent API's base, such as
# http://127.0.0.1:8081/apis/ccompat/v6): reused if one answers, else Apicurio Registry
# started here with in-memory storage (schemas last as long as the process). Without URL:
# SCHEMA_REGISTRY_URL, else that default address.
ensure_registry() {
  local url=${1:-${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v6}} host port i
  if curl -sf "$url/subjects" >/dev/null 2>&1; then
    say "Schema registry answers at $url"
    return
  fi
  host=$(url_host "$url"); port=$(url_port "$url")
  is_local "$host" || die "No schema registry answers at $url, and it is not on this machine: start one, or point SCHEMA_REGISTRY_URL at a running registry."
  fetch_registry
  mkdir -p "$RUN_DIR"
  say "Starting Apicurio Registry $REGISTRY_VERSION on $host:$port"
  setsid java $REGISTRY_HEAP_OPTS -Dquarkus.http.host="$host" -Dquarkus.http.port="$port" \
      -jar "$REGISTRY_HOME/target/registry-1-runner.jar" >"$RUN_DIR/registry.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/registry.pid"
  REGISTRY_STARTED=registry
  for ((i = 0; i < 120; i++)); do
    curl -sf "$url/subjects" >/dev/null 2>&1 && break
    pid_alive registry || { tail -n 20 "$RUN_DIR/registry.log" >&2; die "Apicurio Registry exited (log: $RUN_DIR/registry.log)."; }
    sleep 0.5
  done
  curl -sf "$url/subjects" >/dev/null 2>&1 \
    || { tail -n 20 "$RUN_DIR/registry.log" >&2; die "Apicurio Registry did not answer at $url within 60 s (log: $RUN_DIR/registry.log)."; }
  say "Schema registry (Apicurio Registry $REGISTRY_VERSION) answers at $url"
}
stop_registry() { if [ -n "${REGISTRY_STARTED:-}" ]; then stop_pidfile "$REGISTRY_STARTED"; fi; }

# True while process PID runs. One that has exited but that its parent has not reaped yet (a
# zombie, which kill -0 still finds) does not: a detached service's parent is init, and some
# inits reap every few seconds, which made stop.sh wait 2 s for each stopped service.
running() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ "$state" != Z ]
}

# True when RUN_DIR/NAME.pid names a live process (a missing or empty pid file is not one).
pid_alive() {
  local pid
  pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && running "$pid"
}

# Stops the process in RUN_DIR/NAME.pid: SIGTERM, then SIGKILL after 15 s.
stop_pidfile() {
  local name=$1 file="$RUN_DIR/$1.pid" pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      say "$name did not stop within 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    else
      say "Stopped $name (pid $pid)"
    fi
  fi
  rm -f "$file"
}
