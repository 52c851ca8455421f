//! Faults against the real binary, broker and PostgreSQL: members of the group killed with
//! SIGKILL mid-run. Whatever happens, `events` ends up holding exactly the published set.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cartflow_tests::{
    FAKESTORE_PRODUCTS, TestEnv, any_port, expected_event_ids, serve_catalogue, stored_event_ids,
    wait_until,
};
use rand::RngExt;
use tokio_util::sync::CancellationToken;

const CUSTOMERS: u32 = 200;

/// The tests here start and kill processes against one broker; one at a time keeps their
/// timing (and the broker's group coordinator) out of each other's way.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A consumer process, SIGKILLed if the test ends without stopping it.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Member {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Member {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// A consumer process of `env`'s group.
fn spawn_consumer(env: &TestEnv) -> Member {
    spawn_consumer_with_session(env, 6000)
}

fn spawn_consumer_with_session(env: &TestEnv, session_timeout_ms: u32) -> Member {
    spawn_consumer_with(env, session_timeout_ms, &[])
}

/// A consumer process of `env`'s group with its session timeout and `extra` flags.
fn spawn_consumer_with(env: &TestEnv, session_timeout_ms: u32, extra: &[&str]) -> Member {
    Member(
        Command::new(env!("CARGO_BIN_EXE_tested-consumer"))
            .args(env.kafka_flags())
            .args(["--database-url", &env.database_url])
            .args(["--group", &format!("test-{}", env.id)])
            .args(["--metrics-addr", "127.0.0.1:0", "--skip-migrations"])
            .args(["--session-timeout-ms", &session_timeout_ms.to_string()])
            .args(["--batch-size", "2000"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("CARTFLOW_TEST_CONSUMER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cartflow-consumer"),
    )
}

fn sigkill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    child.wait().expect("wait")
}

async fn publish(env: &TestEnv, events: u64) {
    let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let report = cartflow_producer::run(
        env.backfill_config(&catalogue_url, CUSTOMERS, events),
        any_port().await,
        CancellationToken::new(),
    )
    .await
    .expect("producer run");
    assert_eq!(report.events, events);
}

/// Takes the serial lock, then a fresh environment with `events` already on its topic.
async fn published(events: u64) -> (tokio::sync::MutexGuard<'static, ()>, TestEnv) {
    let serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    publish(&env, events).await;
    (serial, env)
}

async fn assert_exact(env: &TestEnv, events: u64) {
    let stored = stored_event_ids(env).await;
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        events as i64,
        "no duplicates"
    );
    assert!(
        stored == expected_event_ids(CUSTOMERS, events),
        "exactly the published event ids"
    );
}

/// With the consumer of session 1, about one run in six failed against tansu 0.6: its group
/// coordinator left one survivor on its old assignment after the kill, and the dead member's
/// partition was never reassigned. Since the consumer drains faster (pipelined, two write
/// lanes) it passed 26 runs in a row; if it fails again the same way, that is the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_one_killed_mid_run_store_the_exact_set() {
    const EVENTS: u64 = 60_000;
    let (_serial, env) = published(EVENTS).await;
    let mut members: Vec<Member> = (0..3).map(|_| spawn_consumer(&env)).collect();
    env.wait_for_events(EVENTS as i64 / 3, Duration::from_secs(120))
        .await;
    sigkill(&mut members[0]);
    env.wait_for_events(EVENTS as i64, Duration::from_secs(180))
        .await;
    for m in &mut members[1..] {
        assert!(sigterm(m).success(), "a clean stop exits 0");
    }
    assert_exact(&env, EVENTS).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_every_few_seconds_stores_the_exact_set() {
    // Large enough that a consumer draining 100k events/s is killed at least once.
    const EVENTS: u64 = 600_000;
    let (_serial, env) = published(EVENTS).await;
    let mut rng = rand::rng();
    let mut kills = 0;
    // Against Kafka a new member waits up to the dead one's session (6 s) for its partitions,
    // so many 2-5 s lives store little: 600,000 events have taken from about 4 to over 10
    // minutes here (422,269 stored after 600 s and 178 kills once). The deadline is a safety
    // net, not the measure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1500);
    loop {
        let mut member = spawn_consumer(&env);
        let life = Duration::from_millis(rng.random_range(2_000..5_000));
        let stored_all = tokio::time::timeout(life, async {
            env.wait_for_events(EVENTS as i64, Duration::from_secs(3600))
                .await;
        })
        .await
        .is_ok();
        if stored_all {
            assert!(sigterm(&mut member).success(), "a clean stop exits 0");
            break;
        }
        sigkill(&mut member);
        kills += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "not done after {kills} kills"
        );
    }
    eprintln!("Faults: {kills} SIGKILLs over {EVENTS} events.");
    assert!(kills >= 1, "the run was interrupted at least once");
    assert_exact(&env, EVENTS).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_mid_run_exits_0_quickly_and_a_restart_continues_without_a_gap() {
    const EVENTS: u64 = 100_000;
    let (_serial, env) = published(EVENTS).await;
    let mut member = spawn_consumer(&env);
    env.wait_for_events(EVENTS as i64 / 4, Duration::from_secs(120))
        .await;
    let stopping = std::time::Instant::now();
    assert!(sigterm(&mut member).success(), "SIGTERM exits 0");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    let stored = env.count("SELECT count(*) FROM events").await;
    assert!(stored < EVENTS as i64, "stopped mid-run ({stored} stored)");

    let mut member = spawn_consumer(&env);
    env.wait_for_events(EVENTS as i64, Duration::from_secs(120))
        .await;
    assert!(sigterm(&mut member).success());
    assert_exact(&env, EVENTS).await;
    env.cleanup().await;
}

/// Restarts the local PostgreSQL cluster (Debian's `pg_ctlcluster`, as root), the way an
/// operator or a crash would; or, where that is not possible, terminates every connection of
/// the test database from the server side, which the consumer sees the same way.
fn restart_postgres(env: &TestEnv) -> &'static str {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    if let (true, Some(version)) = (is_root, version) {
        let ok = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return "restarted the PostgreSQL cluster";
        }
    }
    let status = Command::new("psql")
        .arg(env.database_url.as_str())
        .args(["-qAtc", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"])
        .status()
        .expect("psql");
    assert!(status.success());
    "terminated every connection of the test database"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_loses_and_duplicates_nothing() {
    const EVENTS: u64 = 100_000;
    let (_serial, env) = published(EVENTS).await;
    let mut member = spawn_consumer(&env);
    env.wait_for_events(EVENTS as i64 / 4, Duration::from_secs(120))
        .await;
    let how = restart_postgres(&env);
    eprintln!("Fault: {how}.");
    // The test's own queries retry until the server is back.
    wait_until("the whole log", Duration::from_secs(180), || async {
        match cartflow_common::db::connect(&cartflow_tests::parse_url(&env.database_url)).await {
            Ok(c) => c
                .query_one("SELECT count(*) FROM events", &[])
                .await
                .is_ok_and(|r| r.get::<_, i64>(0) >= EVENTS as i64),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        member.try_wait().expect("status").is_none(),
        "the consumer rode it out"
    );
    assert!(sigterm(&mut member).success());
    assert_exact(&env, EVENTS).await;
    env.cleanup().await;
}

/// The pid of the process listening on the broker's port (`ss` from iproute2). The test pauses
/// that process, so it needs the broker on this machine, as deploy/local/test.sh runs it.
fn broker_pid(env: &TestEnv) -> u32 {
    let port = env.brokers.rsplit(':').next().expect("broker port");
    let out = Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{port}")])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no local process listens on {}: this test pauses the broker",
                env.brokers
            )
        })
}

fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {pid}");
}

/// Resumes the broker if the test ends while it is paused.
struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// The consumer holds what it prefetched, so the pause hits it while it stores and commits
/// offsets (its commits and fetches stall). After the resume the producer publishes again: the
/// same first events (redelivered, to be skipped) and new ones, which the consumer must fetch.
///
/// The pause stays well under the session timeout: past it, tansu 0.6's group coordinator
/// never completes the member's rejoin (seen in three runs of four; a leave-and-rejoin of the
/// same process did not help either), which is the broker's fault, not a state the consumer
/// can leave on its own. The session is 30 s here, not the other tests' 6 s: on a loaded CI
/// machine a 4 s pause once stretched past 6 s ("session timed out after 6001 ms").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_paused_and_resumed_loses_and_duplicates_nothing() {
    const BEFORE: u64 = 60_000;
    const AFTER: u64 = 90_000;
    let (_serial, env) = published(BEFORE).await;
    let mut member = spawn_consumer_with_session(&env, 30_000);
    env.wait_for_events(BEFORE as i64 / 4, Duration::from_secs(120))
        .await;
    let pid = broker_pid(&env);
    signal(pid, "-STOP");
    let paused = Paused(pid);
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(pid, "-CONT");
    drop(paused);
    publish(&env, AFTER).await;
    env.wait_for_events(AFTER as i64, Duration::from_secs(180))
        .await;
    assert!(
        member.try_wait().expect("status").is_none(),
        "the consumer rode it out"
    );
    assert!(sigterm(&mut member).success());
    assert_exact(&env, AFTER).await;
    env.cleanup().await;
}

/// How to start the broker again: its command line and working folder, read from /proc
/// before it is killed.
struct BrokerCommand {
    argv: Vec<String>,
    cwd: std::path::PathBuf,
}

fn broker_command(pid: u32) -> BrokerCommand {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the broker's command line");
    let argv = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("the broker's folder");
    BrokerCommand { argv, cwd }
}

/// Starts the broker again, in a process group of its own so it outlives the test, and
/// records its pid where deploy/local/test.sh will stop it (CARTFLOW_BROKER_PIDFILE).
#[allow(clippy::zombie_processes)] // The broker outlives the test; its pid file stops it.
fn restart_broker(command: &BrokerCommand, brokers: &str) {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(std::env::temp_dir().join("cartflow-broker-restarted.log"))
        .expect("broker log");
    let child = Command::new(&command.argv[0])
        .args(&command.argv[1..])
        .current_dir(&command.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start the broker again");
    if let Ok(file) = std::env::var("CARTFLOW_BROKER_PIDFILE") {
        std::fs::write(file, child.id().to_string()).expect("write the broker's pid file");
    }
    let port = brokers.rsplit(':').next().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker did not come back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The broker SIGKILLed while the producer publishes (acks=all, idempotent) and the consumer
/// stores, then started again on the same log: every acknowledged event is stored, once.
/// Needs a broker that keeps its log on disk (Apache Kafka as deploy/local runs it); tansu's
/// in-memory storage loses everything here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    const BEFORE: u64 = 60_000;
    const AFTER: u64 = 150_000;
    let (_serial, env) = published(BEFORE).await;
    let mut member = spawn_consumer_with_session(&env, 30_000);
    env.wait_for_events(BEFORE as i64 / 4, Duration::from_secs(120))
        .await;
    let pid = broker_pid(&env);
    let command = broker_command(pid);
    // The producer publishes the same first events again, then new ones, through the outage.
    let producing = {
        let catalogue_url = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
        let config = env.backfill_config(&catalogue_url, CUSTOMERS, AFTER);
        tokio::spawn(async move {
            cartflow_producer::run(config, any_port().await, CancellationToken::new()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(pid, "-KILL");
    eprintln!("Fault: the broker (pid {pid}) killed with SIGKILL.");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = std::time::Instant::now();
    tokio::task::spawn_blocking({
        let brokers = env.brokers.clone();
        move || restart_broker(&command, &brokers)
    })
    .await
    .expect("restart");
    eprintln!(
        "Fault: the broker answered again {:?} after it was started again.",
        down.elapsed()
    );
    let report = producing
        .await
        .expect("producer task")
        .expect("the producer rode out the outage");
    assert_eq!(report.events, AFTER, "every event acknowledged");
    env.wait_for_events(AFTER as i64, Duration::from_secs(300))
        .await;
    assert!(
        member.try_wait().expect("status").is_none(),
        "the consumer rode it out"
    );
    assert!(sigterm(&mut member).success());
    assert_exact(&env, AFTER).await;
    env.cleanup().await;
}

/// One of two members SIGSTOPped for longer than its session timeout: the group gives its
/// partitions to the other; resumed, it finds itself out of the group, its late commits are
/// refused, it rejoins, and together they store the exact set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_paused_past_its_session_timeout_rejoins_and_nothing_is_lost() {
    const EVENTS: u64 = 150_000;
    let (_serial, env) = published(EVENTS).await;
    let mut members: Vec<Member> = (0..2).map(|_| spawn_consumer(&env)).collect();
    env.wait_for_events(EVENTS as i64 / 5, Duration::from_secs(120))
        .await;
    let pid = members[0].id();
    signal(pid, "-STOP");
    let paused = Paused(pid);
    // The session is 6 s: paused for 10 s, the member is expelled.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let while_paused = env.count("SELECT count(*) FROM events").await;
    signal(pid, "-CONT");
    drop(paused);
    env.wait_for_events(EVENTS as i64, Duration::from_secs(300))
        .await;
    eprintln!("{while_paused} events stored when the member resumed.");
    for m in &mut members {
        assert!(
            m.try_wait().expect("status").is_none(),
            "both members alive"
        );
    }
    for m in &mut members {
        assert!(sigterm(m).success(), "a clean stop exits 0");
    }
    assert_exact(&env, EVENTS).await;
    env.cleanup().await;
}

/// Stops the local PostgreSQL cluster (as root with Debian's pg_ctlcluster) and returns how
/// to start it again; None where this test cannot stop it.
fn stop_postgres() -> Option<String> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()?;
    let ok = is_root
        && Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &version,
                "main",
                "stop",
                "-m",
                "fast",
            ])
            .status()
            .is_ok_and(|s| s.success());
    ok.then_some(version)
}

fn start_postgres(version: &str) {
    let ok = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", "start"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "start PostgreSQL {version} again");
}

/// Starts PostgreSQL again if the test ends while it is stopped.
struct Stopped(String);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.0, "main", "start"])
            .status();
    }
}

/// SIGTERM while PostgreSQL is down: the batches in hand cannot be stored, so nothing of them
/// may be committed (an earlier consumer committed its position here and lost them). Restarted
/// with `--rewind-on-assign 0` (the default, and what Kafka needs), it resumes at the
/// committed offset: only a correct broker shows that nothing was skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_postgres_outage_commits_nothing_unstored() {
    const EVENTS: u64 = 100_000;
    let (_serial, env) = published(EVENTS).await;
    let mut member = spawn_consumer(&env);
    env.wait_for_events(EVENTS as i64 / 4, Duration::from_secs(120))
        .await;
    let Some(version) = stop_postgres() else {
        panic!(
            "this test stops the local PostgreSQL cluster: run it as root beside it (deploy/local/test.sh)"
        );
    };
    let outage = Stopped(version.clone());
    // Let the consumer fetch more and fail to write it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sigterm(&mut member).success(),
        "SIGTERM exits 0 during the outage"
    );
    start_postgres(&version);
    drop(outage);
    wait_until("PostgreSQL back", Duration::from_secs(60), || async {
        cartflow_common::db::connect(&cartflow_tests::parse_url(&env.database_url))
            .await
            .is_ok()
    })
    .await;
    let mut member = spawn_consumer_with(&env, 6000, &["--rewind-on-assign", "0"]);
    env.wait_for_events(EVENTS as i64, Duration::from_secs(180))
        .await;
    assert!(sigterm(&mut member).success());
    assert_exact(&env, EVENTS).await;
    env.cleanup().await;
}

/// 60,000 events in one record batch, and the consumer SIGKILLed twice inside it. A member
/// that resumes from a committed offset in mid-batch must get the rest of that batch (tansu
/// 0.6 skips to the next batch, which the old 10,000-message rewind could not cover: 29,000
/// events were lost without a trace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_inside_a_60000_message_record_batch_stores_the_exact_set() {
    use cartflow_schemas::{Action, CartEvent, Codec, Money};
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

    const EVENTS: usize = 60_000;
    let serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let admin: AdminClient<DefaultClientContext> =
        cartflow_common::kafka::client_config(&env.kafka(), "test-admin")
            .create()
            .expect("admin");
    let topic = NewTopic::new(&env.topics.cart_events_topic, 1, TopicReplication::Fixed(1))
        .set("max.message.bytes", "67108864");
    for r in admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topic")
    {
        r.expect("topic created");
    }
    // Everything in one batch: it waits 10 s to fill, and may hold 60,000 messages and 64 MiB.
    let producer: FutureProducer = cartflow_common::kafka::client_config(&env.kafka(), "test")
        .set("linger.ms", "10000")
        .set("batch.num.messages", "60000")
        .set("batch.size", "67108864")
        .set("message.max.bytes", "67108864")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let codec = Codec::single_object();
    let mut ids = std::collections::HashSet::new();
    let mut deliveries = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let event = CartEvent {
            event_id: uuid::Uuid::new_v4(),
            customer_id: (i % 500) as i64,
            product_id: 1 + (i % 20) as i64,
            product_title: "Mens Cotton Jacket".into(),
            product_price: Money::from_cents(5_599),
            product_image: String::new(),
            action: Action::AddToCart,
            description: "added".into(),
            timestamp: chrono::Utc::now(),
            session_id: None,
            user_agent: None,
            ip_address: None,
        };
        ids.insert(event.event_id);
        let bytes = codec.encode(&event).expect("encode");
        let key = event.customer_id.to_string();
        let record = FutureRecord::to(&env.topics.cart_events_topic)
            .key(&key)
            .payload(&bytes);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let mut offsets = std::collections::BTreeSet::new();
    for d in deliveries {
        let delivery = d.await.expect("delivery").expect("acknowledged");
        offsets.insert(delivery.offset);
    }
    assert_eq!(offsets.len(), EVENTS);

    let mut kills = 0;
    for stop_at in [EVENTS as i64 / 6, EVENTS as i64 / 2] {
        let mut member = spawn_consumer(&env);
        env.wait_for_events(stop_at, Duration::from_secs(120)).await;
        sigkill(&mut member);
        kills += 1;
    }
    let mut member = spawn_consumer(&env);
    env.wait_for_events(EVENTS as i64, Duration::from_secs(180))
        .await;
    assert!(sigterm(&mut member).success());
    assert_eq!(kills, 2);
    assert_eq!(
        env.count("SELECT count(*) FROM events").await,
        EVENTS as i64
    );
    assert!(
        stored_event_ids(&env).await == ids,
        "exactly the published event ids"
    );
    drop(serial);
    env.cleanup().await;
}
