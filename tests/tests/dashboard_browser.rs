//! The dashboard in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol): it connects, shows the analytics, the numbers on its tiles equal
//! `/api/snapshot`, it updates live without a reload, it fits a phone's width, and its live
//! events table shows what a producer publishes through the real broker.
//! Screenshots go to `target/dashboard-1280.png` and `target/dashboard-phone.png`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use cartflow_tests::TestDb;
use cartflow_tests::analytics::{insert_events, project_everything};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";

struct Browser {
    child: Child,
    _profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

/// Starts Chromium on `url`; returns it and its DevTools port.
fn chromium(url: &str) -> (Browser, u16) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: deploy/local/test.sh installs it (apt-get install chromium)"
    );
    let profile = std::env::temp_dir().join(format!("cartflow-chromium-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,2200",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().expect("stderr");
    let mut port = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("chromium stderr");
        if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
            port = rest.split('/').next().and_then(|p| p.parse().ok());
            break;
        }
    }
    let browser = Browser {
        child,
        _profile: profile,
    };
    (
        browser,
        port.expect("chromium printed its DevTools address"),
    )
}

/// A DevTools session on the page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    async fn open(port: u16) -> Page {
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("DevTools targets")
            .json()
            .await
            .expect("JSON");
        let url = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("DevTools");
        Page { ws, next_id: 1 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.request(method, params).await {
            Ok(result) => result,
            Err(error) => panic!("{method}: {error}"),
        }
    }

    /// One DevTools request: its result, or the error it answered with.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::Text(request.to_string().into()))
            .await
            .expect("send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("DevTools answered")
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["id"] == id {
                    return match v.get("error") {
                        Some(_) => Err(v),
                        None => Ok(v["result"].clone()),
                    };
                }
            }
        }
    }

    /// Evaluates `expression` in the page; returns its JSON value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // A page that is navigating has no context to evaluate in: DevTools answers
            // "Inspected target navigated or closed"; that is "not yet", not a failure.
            let answer = self
                .request(
                    "Runtime.evaluate",
                    json!({"expression": expression, "returnByValue": true}),
                )
                .await;
            match answer {
                Ok(r) if r["result"]["value"] == json!(true) => return,
                Ok(_) => {}
                Err(e) if e.to_string().contains("navigated") => {}
                Err(e) => panic!("Runtime.evaluate: {e}"),
            }
            assert!(Instant::now() < deadline, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real mouse click on the middle of the element `selector` finds.
    async fn click(&mut self, selector: &str) {
        let at = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); el.scrollIntoView(); \
                 const r = el.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2].join(' '); }})()"
            ))
            .await;
        assert!(at.is_string(), "{selector} is not on the page");
        self.click_at(&at).await;
    }

    /// A real mouse click at `at`, the page's coordinates as the text "x y".
    async fn click_at(&mut self, at: &Value) {
        let at: Vec<f64> = at
            .as_str()
            .expect("a point")
            .split(' ')
            .map(|v| v.parse().expect("a number"))
            .collect();
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": at[0], "y": at[1], "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// The KPI tiles as `{key: raw value}`.
    async fn tiles(&mut self) -> serde_json::Map<String, Value> {
        let tiles: Value =
            serde_json::from_str(self.eval(TILES).await.as_str().expect("tiles")).expect("JSON");
        tiles.as_object().expect("tiles").clone()
    }

    async fn screenshot(&mut self, name: &str) -> std::path::PathBuf {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("image data"))
            .expect("base64");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&dir).expect("target dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

/// Every tile shows what `api` (the `kpis` of `source`) says.
fn assert_tiles_show(tiles: &serde_json::Map<String, Value>, api: &Value, source: &str) {
    assert!(tiles.len() >= 8, "{tiles:?}");
    for (key, shown) in tiles {
        let shown: f64 = shown.as_str().unwrap().parse().unwrap_or(f64::NAN);
        let want = api[key].as_f64().unwrap_or(f64::NAN);
        assert!(
            (shown - want).abs() < 1e-9 || (shown.is_nan() && want.is_nan()),
            "{key}: page shows {shown}, {source} has {want}"
        );
    }
}

async fn add_events(pg: &mut tokio_postgres::Client, first: i64, n: i64) {
    insert_events(pg, first, n, 40).await;
    project_everything(pg, 10_000).await;
}

const TILES: &str = "JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-kpi]')]\
    .map(e => [e.dataset.kpi, e.dataset.value])))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_snapshot_and_updates_live() {
    let db = TestDb::new().await;
    let mut pg = db.client().await;
    // Two of the carts only ever get items added: abandoned, for the drill-down below.
    insert_events(&pg, 0, 2_000, 40).await;
    pg.execute(
        "UPDATE events SET action = 'add_to_cart' WHERE session_id IN ('s7', 's8')",
        &[],
    )
    .await
    .expect("two abandoned carts");
    project_everything(&mut pg, 10_000).await;
    let shutdown = CancellationToken::new();
    let gateway = cartflow_tests::spawn_gateway(
        &db.url,
        &cartflow_tests::flags(&["--no-feed", "--tick-ms", "50"]),
        &shutdown,
    )
    .await;
    let base = format!("http://{}", gateway.addr);
    let (_browser, port) = chromium(&format!("{base}/"));
    let mut page = Page::open(port).await;
    page.wait_for(
        "live data",
        "document.getElementById('state').dataset.state === 'live' && \
         document.querySelector('[data-kpi=events]').dataset.value === '2000'",
        Duration::from_secs(30),
    )
    .await;

    // Every tile equals the API.
    let snapshot: Value = reqwest::get(format!("{base}/api/snapshot"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tiles = page.tiles().await;
    assert_tiles_show(&tiles, &snapshot["data"]["kpis"], "/api/snapshot");
    let tiles = &tiles;
    // The four cart states are on the page and add up to the carts created.
    let tile = |key: &str| -> i64 {
        tiles
            .get(key)
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} tile: {tiles:?}"))
    };
    assert_eq!(
        [
            "purchased_carts",
            "abandoned_carts",
            "emptied_carts",
            "open_carts"
        ]
        .map(tile)
        .iter()
        .sum::<i64>(),
        tile("carts"),
        "purchased + abandoned + emptied + open tiles"
    );
    assert!(tiles.contains_key("strict_abandonment_rate"), "{tiles:?}");
    for section in [
        "insights",
        "products",
        "abandoned",
        "ages",
        "customers",
        "categories",
        "carts",
    ] {
        let rows = page
            .eval(&format!(
                "document.getElementById('{section}').querySelectorAll('li, tbody tr').length"
            ))
            .await;
        assert!(rows.as_u64().unwrap_or(0) > 0, "{section} is empty");
    }
    let charts = page
        .eval("document.querySelectorAll('.chart canvas').length")
        .await;
    assert!(charts.as_u64().unwrap_or(0) >= 7, "charts drawn: {charts}");
    // The timeline shows the API's minutes and marks.
    let timeline = snapshot["data"]["timeline"].as_array().expect("timeline");
    assert!(!timeline.is_empty(), "the last hour has minutes");
    let marked = timeline.iter().filter(|r| r["marked"] == true).count();
    let shown = page
        .eval("[document.getElementById('chart-timeline').dataset.minutes, document.getElementById('chart-timeline').dataset.marked].join(' ')")
        .await;
    assert_eq!(shown, json!(format!("{} {marked}", timeline.len())));
    // Drill-down: a product's row opens its events from the log, an abandoned cart's row the
    // cart's state and history.
    page.eval("document.querySelector('#products tbody tr').click()")
        .await;
    page.wait_for(
        "a product's events",
        "(document.getElementById('drill').dataset.loaded || '').startsWith('events?product_id=') && \
         document.querySelectorAll('#drill-table tbody tr').length === 50",
        Duration::from_secs(30),
    )
    .await;
    page.eval("document.querySelector('#carts tbody tr').click()")
        .await;
    page.wait_for(
        "an abandoned cart's history",
        "(document.getElementById('drill').dataset.loaded || '').startsWith('carts/') && \
         document.getElementById('drill-title').textContent.includes('abandoned') && \
         document.querySelectorAll('#drill-table tbody tr').length > 0",
        Duration::from_secs(30),
    )
    .await;
    // A minute of the timeline opens that minute's events: a real mouse click on the middle
    // of its bar.
    let minute = timeline.last().expect("a minute");
    let events_in_minute = minute["events"].as_i64().expect("events");
    let carts_in_minute = minute["carts"].as_i64().expect("carts");
    let at = page
        .eval(&format!(
            "(() => {{ const el = document.getElementById('chart-timeline'); el.scrollIntoView(); \
             const c = echarts.getInstanceByDom(el); \
             const n = c.getOption().xAxis[0].data.length; \
             const [x, y] = c.convertToPixel({{seriesIndex: 0}}, [n - 1, {carts_in_minute} / 2]); \
             const r = el.getBoundingClientRect(); return [r.left + x, r.top + y].join(' '); }})()"
        ))
        .await;
    page.click_at(&at).await;
    page.wait_for(
        "a minute's events",
        &format!(
            "(document.getElementById('drill').dataset.loaded || '').startsWith('events?from=') && \
             document.querySelectorAll('#drill-table tbody tr').length === {events_in_minute}"
        ),
        Duration::from_secs(30),
    )
    .await;
    let wide = page.screenshot("dashboard-1280.png").await;

    // Live: new events reach the page without a reload.
    add_events(&mut pg, 2_000, 500).await;
    page.wait_for(
        "the update",
        "document.querySelector('[data-kpi=events]').dataset.value === '2500'",
        Duration::from_secs(30),
    )
    .await;

    // A phone's width: nothing wider than the screen.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 1800, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fits = page
        .eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(fits, json!(true), "the page is wider than a phone");
    let phone = page.screenshot("dashboard-phone.png").await;
    eprintln!("Screenshots: {} and {}", wide.display(), phone.display());

    // A dropped connection: the page reconnects by itself with ?since=SEQ and gets only what
    // it missed (nothing), then live deltas again.
    page.eval("window.cartflowSocket.close()").await;
    page.wait_for(
        "the page to resume with deltas",
        "document.body.dataset.resumed === 'deltas' && \
         document.getElementById('state').dataset.state === 'live'",
        Duration::from_secs(30),
    )
    .await;
    add_events(&mut pg, 2_500, 100).await;
    page.wait_for(
        "a live update after resuming",
        "document.querySelector('[data-kpi=events]').dataset.value === '2600'",
        Duration::from_secs(30),
    )
    .await;

    // A gateway restart at the same address, with events stored while it was down: the page
    // reconnects by itself and, its sequence being the old gateway's, gets a new snapshot.
    let addr = gateway.addr;
    shutdown.cancel();
    gateway.stopped().await.expect("the gateway stops");
    add_events(&mut pg, 2_600, 100).await;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the same address again");
    let shutdown = CancellationToken::new();
    let _gateway = cartflow_tests::spawn_gateway_on(
        listener,
        &db.url,
        &cartflow_tests::flags(&["--no-feed", "--tick-ms", "50"]),
        &shutdown,
    )
    .await;
    page.wait_for(
        "the page back on the restarted gateway",
        "document.body.dataset.resumed === 'snapshot' && \
         document.body.dataset.snapshots === '2' && \
         document.getElementById('state').dataset.state === 'live' && \
         document.querySelector('[data-kpi=events]').dataset.value === '2700'",
        Duration::from_secs(30),
    )
    .await;
    shutdown.cancel();
    db.cleanup().await;
}

/// Picking a range: the tiles and the timeline answer for it (equal to `/api/range`), the URL
/// carries it, a product opens its events in it, it follows live updates, and a shared
/// `from`/`to` URL opens on the same numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picked_range_narrows_the_tiles_and_the_timeline_and_lives_in_the_url() {
    let db = TestDb::new().await;
    let mut pg = db.client().await;
    insert_events(&pg, 0, 2_000, 40).await;
    project_everything(&mut pg, 10_000).await;
    let shutdown = CancellationToken::new();
    let gateway = cartflow_tests::spawn_gateway(
        &db.url,
        &cartflow_tests::flags(&["--no-feed", "--tick-ms", "50"]),
        &shutdown,
    )
    .await;
    let base = format!("http://{}", gateway.addr);
    let api = |query: String| {
        let base = base.clone();
        async move {
            reqwest::get(format!("{base}/api/range?{query}"))
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let (_browser, port) = chromium(&format!("{base}/"));
    let mut page = Page::open(port).await;
    page.wait_for(
        "live data",
        "document.getElementById('state').dataset.state === 'live' && \
         document.querySelector('[data-kpi=events]').dataset.value === '2000'",
        Duration::from_secs(30),
    )
    .await;

    page.click("#range button[data-last='24h']").await;
    let range = api("last=24h".into()).await;
    let events = range["kpis"]["events"].as_i64().expect("events");
    assert!(
        events > 0 && events < 2_000,
        "24 hours of 27 days: {events}"
    );
    page.wait_for(
        "the tiles of the last 24 hours",
        &format!(
            "location.search === '?last=24h' && \
             document.querySelector('[data-kpi=events]').dataset.value === '{events}' && \
             document.getElementById('chart-timeline').dataset.range === 'last=24h'"
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_tiles_show(&page.tiles().await, &range["kpis"], "/api/range?last=24h");
    let buckets = page
        .eval("Number(document.getElementById('chart-timeline').dataset.buckets)")
        .await;
    assert_eq!(buckets, json!(range["timeline"].as_array().unwrap().len()));
    assert_eq!(range["range"]["grain"], "minute");
    let shot = page.screenshot("dashboard-range.png").await;
    eprintln!("Screenshot: {}", shot.display());

    // A product opens its events within the range.
    let product = range["products"][0]["product_id"]
        .as_i64()
        .expect("a product");
    let (from, to) = (
        range["range"]["from"].as_str().unwrap().to_owned(),
        range["range"]["to"].as_str().unwrap().to_owned(),
    );
    let in_range: i64 = pg
        .query_one(
            "SELECT count(*) FROM events WHERE product_id = $1 \
                 AND \"timestamp\" >= $2::text::timestamptz AND \"timestamp\" < $3::text::timestamptz",
            &[&product, &from, &to],
        )
        .await
        .unwrap()
        .get(0);
    page.click("#products tbody tr").await;
    page.wait_for(
        "the product's events in the range",
        &format!(
            "(document.getElementById('drill').dataset.loaded || '').startsWith('events?product_id={product}&from=') && \
             document.querySelectorAll('#drill-table tbody tr').length === {}",
            in_range.min(50)
        ),
        Duration::from_secs(30),
    )
    .await;

    // The legend chooses the timeline's metrics: revenue, off at first, turned on.
    let revenue_shown = "echarts.getInstanceByDom(document.getElementById('chart-timeline'))\
        .getOption().legend[0].selected.revenue === true";
    assert_eq!(page.eval(revenue_shown).await, json!(false));
    page.eval(
        "echarts.getInstanceByDom(document.getElementById('chart-timeline'))\
         .dispatchAction({type: 'legendToggleSelect', name: 'revenue'})",
    )
    .await;

    // Live: the range is read again after an update, and the chosen metrics stay.
    add_events(&mut pg, 2_000, 500).await;
    let range = api("last=24h".into()).await;
    page.wait_for(
        "the range after the update",
        &format!(
            "document.querySelector('[data-kpi=events]').dataset.value === '{}' && \
             document.querySelector('[data-kpi=carts]').dataset.value === '{}'",
            range["kpis"]["events"], range["kpis"]["carts"]
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(page.eval(revenue_shown).await, json!(true));

    // A shared URL with from and to (here six hours, a week before the end) opens on them.
    let end = chrono::DateTime::parse_from_rfc3339(&to).unwrap();
    let fmt = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (from, to) = (
        fmt(end - chrono::TimeDelta::days(7)),
        fmt(end - chrono::TimeDelta::days(7) + chrono::TimeDelta::hours(6)),
    );
    let shared = api(format!("from={from}&to={to}")).await;
    assert_eq!(shared["range"]["grain"], "hour");
    page.call(
        "Page.navigate",
        json!({"url": format!("{base}/?from={from}&to={to}")}),
    )
    .await;
    page.wait_for(
        "the shared range",
        &format!(
            "document.getElementById('state').dataset.state === 'live' && \
             (document.getElementById('chart-timeline').dataset.range || '').startsWith('from=') && \
             document.querySelector('[data-kpi=events]').dataset.value === '{}'",
            shared["kpis"]["events"]
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_tiles_show(&page.tiles().await, &shared["kpis"], "/api/range?from=&to=");
    shutdown.cancel();
    db.cleanup().await;
}

/// The live feed through the real broker to the page: events a producer publishes appear in
/// the "Live events" table (drawn once per frame, however many messages come), at most 40
/// rows, each a real event, and the rate beside it counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_shows_published_events() {
    use cartflow_tests::{FAKESTORE_PRODUCTS, TestEnv, any_port, serve_catalogue};

    let env = TestEnv::new().await;
    env.create_cart_events_topic().await;
    let shutdown = CancellationToken::new();
    // The default tick: what a user runs.
    let gateway =
        cartflow_tests::spawn_gateway(&env.database_url, &env.kafka_flags(), &shutdown).await;
    let (_browser, port) = chromium(&format!("http://{}/", gateway.addr));
    let mut page = Page::open(port).await;
    page.wait_for(
        "the live state",
        "document.getElementById('state').dataset.state === 'live'",
        Duration::from_secs(30),
    )
    .await;

    // The feed starts at the end of each partition once it is assigned: publish until the
    // page shows events.
    let catalogue = serve_catalogue(200, FAKESTORE_PRODUCTS).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = "document.querySelectorAll('#feed-table tbody tr').length";
    loop {
        assert!(
            Instant::now() < deadline,
            "the page never showed a live event"
        );
        cartflow_producer::run(
            env.backfill_config(&catalogue, 20, 300),
            any_port().await,
            CancellationToken::new(),
        )
        .await
        .expect("publish");
        let shown = tokio::time::timeout(
            Duration::from_secs(5),
            page.wait_for("feed rows", &format!("{rows} > 0"), Duration::from_secs(5)),
        )
        .await;
        if shown.is_ok() {
            break;
        }
    }
    // Rows are drawn on the next frame after the last message: wait until the page holds
    // still, then read what it shows.
    page.wait_for(
        "the feed drawn",
        &format!("{rows} === Math.min(40, state.feed.length)"),
        Duration::from_secs(10),
    )
    .await;
    let shown: Value = serde_json::from_str(
        page.eval(
            "JSON.stringify([...document.querySelectorAll('#feed-table tbody tr')]\
             .map(r => [...r.cells].map(c => c.textContent)))",
        )
        .await
        .as_str()
        .expect("rows"),
    )
    .expect("JSON");
    let shown = shown.as_array().expect("rows");
    assert!(!shown.is_empty() && shown.len() <= 40, "{shown:?}");
    for row in shown {
        let cells: Vec<&str> = row
            .as_array()
            .expect("cells")
            .iter()
            .map(|c| c.as_str().expect("text"))
            .collect();
        assert_eq!(cells.len(), 5, "{cells:?}");
        assert!(
            ["add to cart", "remove from cart", "purchase cart"].contains(&cells[1]),
            "an action: {cells:?}"
        );
        assert!(cells[4].parse::<i64>().is_ok(), "a customer id: {cells:?}");
    }
    let counted = page.eval("state.feedCount").await.as_u64().expect("count");
    assert!(counted >= shown.len() as u64, "counted {counted}");
    let rate = page
        .eval("document.getElementById('feed-rate').textContent")
        .await;
    assert!(
        rate.as_str()
            .is_some_and(|r| r.ends_with(" events/s") && !r.starts_with("0.0")),
        "the rate beside the feed: {rate}"
    );
    shutdown.cancel();
    env.cleanup().await;
}
