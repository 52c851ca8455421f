//! deploy/: the Prometheus configuration and alert rules, the Grafana dashboard and the
//! compose file, checked with the real tools (the distribution's `prometheus`, `promtool` and
//! `docker-compose`, which deploy/local/test.sh installs), and a real Prometheus scraping a
//! running stack: every dashboard query returns data, every alert rule evaluates.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cartflow_tests::{FAKESTORE_PRODUCTS, TestEnv, any_port, serve_catalogue, wait_until};
use clap::Parser;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The datasource uid the provisioning gives Prometheus, which every panel must name.
const DATASOURCE_UID: &str = "cartflow-prometheus";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs a distribution tool; panics with its output, or with how to install it.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): deploy/local/test.sh installs it from the distribution's packages")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

#[test]
fn prometheus_configs_are_valid_and_the_alerts_pass_their_unit_tests() {
    for config in [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/prometheus.local.yml",
    ] {
        let out = tool("promtool", &["check", "config", config]);
        assert!(
            out.contains("rule found") || out.contains("rules found"),
            "{out}"
        );
    }
    let out = tool(
        "promtool",
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn compose_file_is_valid_and_runs_every_part() {
    let services: BTreeSet<String> = tool("docker-compose", &["config", "--services"])
        .lines()
        .map(str::to_owned)
        .collect();
    for s in [
        "postgres",
        "redpanda",
        "redpanda-console",
        "migrate",
        "producer",
        "consumer",
        "projector",
        "gateway",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains(s),
            "docker-compose.yml lacks {s}: {services:?}"
        );
    }
    let config = tool("docker-compose", &["config"]);
    let block = |name: &str| service_block(&config, name);
    assert!(block("consumer").contains("replicas: 3"), "three consumers");
    assert!(
        block("projector").contains("replicas: 2"),
        "a projector and a standby"
    );
    for s in [
        "producer",
        "consumer",
        "projector",
        "gateway",
        "postgres",
        "redpanda",
    ] {
        assert!(block(s).contains("healthcheck:"), "{s} has a health check");
    }
    for s in ["consumer", "projector", "gateway"] {
        assert!(
            block(s).contains("condition: service_completed_successfully"),
            "{s} waits for the migration"
        );
    }
}

/// One service's lines in `docker-compose config`'s normalised output (two-space indents).
fn service_block(config: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = config.lines().skip_while(|l| *l != header);
    lines.next().unwrap_or_else(|| panic!("no service {name}"));
    lines
        .take_while(|l| l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn dashboard() -> Value {
    let path = root().join("deploy/grafana/dashboards/cartflow.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard JSON"))
        .expect("valid JSON")
}

/// Every panel, rows included, and the panels inside collapsed rows.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p.clone());
        out.extend(p["panels"].as_array().into_iter().flatten().cloned());
    }
    out
}

/// The PromQL of every panel.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().expect("expr").to_owned()))
        })
        .collect()
}

/// The cartflow metric names an expression reads (`_bucket` and the like included).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("cartflow_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_panels_have_unique_ids_and_the_provisioned_datasource() {
    let provisioning = std::fs::read_to_string(
        root().join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .expect("datasource provisioning");
    assert!(
        provisioning.contains(&format!("uid: {DATASOURCE_UID}")),
        "the provisioned datasource has uid {DATASOURCE_UID}"
    );
    let dashboard = dashboard();
    let panels = panels(&dashboard);
    let mut ids = HashSet::new();
    for p in &panels {
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], DATASOURCE_UID, "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has queries", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], DATASOURCE_UID, "{}", p["title"]);
        }
    }
    // What the issue asks the dashboard to show.
    let all: String = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, q)| q)
        .collect();
    for needed in [
        "cartflow_producer_events_total",
        "cartflow_consumer_stored_total",
        "cartflow_projector_events_total",
        "cartflow_consumer_lag_messages",
        "cartflow_projector_lag_seconds",
        "cartflow_event_latency_seconds_bucket",
        "cartflow_consumer_dead_letters_total",
        "cartflow_gateway_clients",
        "cartflow_gateway_cut_clients_total",
        "cartflow_consumer_write_seconds_bucket",
    ] {
        assert!(all.contains(needed), "the dashboard shows {needed}");
    }
}

/// A Prometheus server of the test's own, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job, host:port) every second, with the
    /// project's alert rules.
    async fn start(targets: &[(&str, String)]) -> Prometheus {
        let dir =
            std::env::temp_dir().join(format!("cartflow-prometheus-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let rules = root().join("deploy/prometheus/alerts.yml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        // A free port: bound, read and released (Prometheus takes no port 0).
        let port = any_port().await.local_addr().expect("addr").port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "start prometheus (deploy/local/test.sh installs it: apt-get install prometheus)",
            );
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        wait_until(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async {
                reqwest::get(&ready)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        prometheus
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let v: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(v["status"], "success", "{path} {query:?}: {v}");
        v["data"].clone()
    }

    /// Every alerting rule, with its state and last evaluation.
    async fn alert_rules(&self) -> Vec<Value> {
        self.api("rules", &[("type", "alert")]).await["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The instant vector `expr` evaluates to now.
    async fn query(&self, expr: &str) -> Vec<Value> {
        self.api("query", &[("query", expr)]).await["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A sample's value, NaN when it is not a number.
fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn publish_poison(producer: &FutureProducer, env: &TestEnv) {
    producer
        .send(
            FutureRecord::to(&env.topics.cart_events_topic)
                .key("1")
                .payload(b"not avro".as_slice()),
            Duration::from_secs(10),
        )
        .await
        .expect("publish a poison message");
}

/// Metric names in a `/metrics` page.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_the_stack_and_every_dashboard_query_and_alert_has_data() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let catalogue = serve_catalogue(200, FAKESTORE_PRODUCTS).await;

    // The stack, each service with its own /metrics.
    let mut producer_args = vec!["cartflow-producer".to_owned()];
    producer_args.extend(env.kafka_flags());
    producer_args
        .extend(["--catalogue-url", &catalogue, "live", "--rate", "200"].map(String::from));
    let producer_config = cartflow_producer::Config::try_parse_from(producer_args).expect("flags");
    let producer_ops = any_port().await;
    let consumer_ops = any_port().await;
    let projector_ops = any_port().await;
    let addr = |l: &tokio::net::TcpListener| l.local_addr().expect("addr").to_string();
    let (producer_addr, consumer_addr, projector_addr) = (
        addr(&producer_ops),
        addr(&consumer_ops),
        addr(&projector_ops),
    );
    tokio::spawn(cartflow_consumer::run(
        env.consumer_config(),
        consumer_ops,
        stop.clone(),
    ));
    let projector_config = cartflow_projector::Cli::try_parse_from([
        "cartflow-projector",
        "--database-url",
        &env.database_url,
        "--poll-ms",
        "100",
    ])
    .expect("projector flags")
    .run;
    tokio::spawn(cartflow_projector::run(
        projector_config,
        projector_ops,
        stop.clone(),
    ));
    let relay_ops = any_port().await;
    let relay_addr = addr(&relay_ops);
    cartflow_tests::outcomes::spawn_relay(&env, relay_ops, &stop);
    let gateway = cartflow_tests::spawn_gateway(&env.database_url, &env.kafka_flags(), &stop).await;
    let gateway_addr = gateway.addr.to_string();
    tokio::spawn(cartflow_producer::run(
        producer_config,
        producer_ops,
        stop.clone(),
    ));
    // A WebSocket client, so the gateway has one to count and push to.
    let (_client, _) = tokio_tungstenite::connect_async(format!("ws://{gateway_addr}/ws"))
        .await
        .expect("WebSocket client");
    env.wait_for_events(200, Duration::from_secs(60)).await;
    // One poison message, so the dead-letter series exists.
    let raw: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.brokers)
        .create()
        .expect("producer");
    publish_poison(&raw, &env).await;

    let targets = [
        ("producer", producer_addr),
        ("consumer", consumer_addr),
        ("projector", projector_addr),
        ("relay", relay_addr),
        ("gateway", gateway_addr),
    ];
    let prometheus = Prometheus::start(&targets).await;

    let queries = dashboard_queries(&dashboard());
    // Rates need two scrapes in their window and latency needs events through every stage:
    // wait until every query has a number.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut missing: Vec<String> = Vec::new();
    while tokio::time::Instant::now() < deadline {
        missing.clear();
        for (title, expr) in &queries {
            let result = prometheus.query(expr).await;
            if !result.iter().any(|s| value(s).is_finite()) {
                missing.push(format!("{title}: {expr}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        missing.is_empty(),
        "dashboard queries without data after 90 s:\n{}",
        missing.join("\n")
    );
    // Every metric any service exports, to check the dashboard and the rules name no other.
    let mut names = BTreeSet::new();
    for (_, target) in &targets {
        let text = reqwest::get(format!("http://{target}/metrics"))
            .await
            .expect("/metrics")
            .text()
            .await
            .expect("text");
        names.extend(exported(&text));
    }
    for (title, expr) in &queries {
        for name in metric_names(expr) {
            assert!(
                names.contains(&name),
                "panel {title:?} reads {name}, which no service exports"
            );
        }
    }
    // The pipeline's own latency is on the dashboard: every stage reports.
    let stages: BTreeSet<String> = prometheus
        .query("sum by (stage) (cartflow_event_latency_seconds_count) > 0")
        .await
        .iter()
        .filter_map(|s| s["metric"]["stage"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        stages,
        ["feed", "projected", "pushed", "stored"]
            .map(String::from)
            .into(),
        "events measured at every stage"
    );

    // Alert rules: loaded, evaluated without error, and every series they read has data.
    // (Their conditions are false on a healthy stack, so the conditions themselves return
    // nothing; promtool's unit tests show each firing.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let rules = prometheus.alert_rules().await;
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        if !rules.is_empty() && evaluated {
            break rules;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rules not evaluated: {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let defined = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml"))
        .expect("alerts.yml")
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(rules.len(), defined, "every rule of alerts.yml loaded");
    for rule in &rules {
        let (name, expr) = (
            rule["name"].as_str().expect("name"),
            rule["query"].as_str().expect("query"),
        );
        assert_eq!(rule["health"], "ok", "{name}: {rule}");
        for metric in metric_names(expr) {
            assert!(
                names.contains(&metric),
                "{name} reads {metric}, which no service exports"
            );
            let series = prometheus.query(&format!("count({metric})")).await;
            assert!(
                !series.is_empty(),
                "{name} reads {metric}, which Prometheus has no data for"
            );
        }
        // None fires on a healthy stack (the dead letter above is older than two scrapes, so
        // its rate is zero).
        assert_eq!(
            rule["state"], "inactive",
            "{name} on a healthy stack: {rule}"
        );
    }
    let up = prometheus.query("up == 1").await;
    assert_eq!(up.len(), targets.len(), "every target scraped: {up:?}");

    // And one fires for real: a second poison message makes the dead-letter rate positive.
    publish_poison(&raw, &env).await;
    wait_until(
        "CartflowDeadLetters to fire",
        Duration::from_secs(60),
        || async {
            let groups = prometheus.api("rules", &[("type", "alert")]).await;
            groups["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .any(|r| r["name"] == "CartflowDeadLetters" && r["state"] == "firing")
        },
    )
    .await;

    stop.cancel();
    drop(prometheus);
    env.cleanup().await;
}
