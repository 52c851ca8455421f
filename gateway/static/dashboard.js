// The cartflow dashboard: a snapshot on connect, then deltas and live events over /ws.
// Protocol: docs/gateway.md. Reconnects by itself with ?since=SEQ, so it gets only the deltas
// it missed (or a fresh snapshot when the gateway no longer has them).
"use strict";

const state = { data: null, seq: null, feed: [], feedCount: 0, feedSince: Date.now() };
const charts = {};
const $ = (id) => document.getElementById(id);

const num = new Intl.NumberFormat("en-US");
const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const fmt = {
  n: (v) => (v == null ? "–" : num.format(v)),
  money: (v) => (v == null ? "–" : money.format(v)),
  pct: (v) => (v == null ? "–" : (v * 100).toFixed(1) + "%"),
};
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

// KPI tiles: each carries its raw value in data-value, so tests compare it with /api/snapshot.
const TILES = [
  ["events", "Events", fmt.n],
  ["revenue", "Revenue", fmt.money],
  ["carts", "Carts created", fmt.n],
  // The four cart states: they add up to the carts created (README, "The analytics").
  ["purchased_carts", "Purchased", fmt.n],
  ["abandoned_carts", "Abandoned", fmt.n],
  ["emptied_carts", "Emptied", fmt.n],
  ["open_carts", "Open", fmt.n],
  ["cart_to_purchase_rate", "Cart-to-purchase", fmt.pct],
  ["cart_abandonment_rate", "Cart abandonment (not bought)", fmt.pct],
  ["strict_abandonment_rate", "Strict abandonment (abandoned)", fmt.pct],
  ["item_abandonment_rate", "Item abandonment", fmt.pct],
  ["cart_abandoned_value", "Abandoned value (carts)", fmt.money],
  ["item_abandoned_value", "Abandoned value (items)", fmt.money],
  ["average_order_value", "Average order", fmt.money],
];

function setState(text, cls) {
  const el = $("state");
  el.textContent = text;
  el.className = cls;
  el.dataset.state = cls;
}

function chart(id) {
  if (!charts[id] && window.echarts) charts[id] = echarts.init($(id));
  return charts[id];
}

// `drill[i]`, when given, is the /api path row i opens in the drill-down panel.
function table(id, head, rows, drill) {
  const th = head.map(([label, n]) => `<th${n ? ' class="n"' : ""}>${esc(label)}</th>`).join("");
  const body = rows.map((r, j) => (drill ? `<tr data-drill="${esc(drill[j])}" data-title="${esc(r[0])}">` : "<tr>") +
    r.map((c, i) => `<td${head[i][1] ? ' class="n"' : ""}>${esc(c)}</td>`).join("") + "</tr>").join("");
  $(id).innerHTML = `<thead><tr>${th}</tr></thead><tbody>${body}</tbody>`;
}

// The drill-down panel: the raw events behind a clicked row or timeline minute (docs/gateway.md, "Drill-down").
// `/api/{path}`, with the page's token when it has one.
function api(path) {
  const token = new URLSearchParams(location.search).get("token");
  return `/api/${path}` + (token ? `${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : "");
}

async function drill(path, title) {
  $("drill-title").textContent = `${title}…`;
  const r = await fetch(api(path));
  if (!r.ok) { $("drill-title").textContent = `${title}: ${r.status} ${await r.text()}`; return; }
  const d = await r.json();
  const time = (t) => t.replace("T", " ").slice(0, 19);
  if (d.cart) {
    $("drill-title").textContent = `${title}: ${d.cart.state}, ${d.cart.items} items worth ${d.cart.value}`;
    table("drill-table", [["Time (event)"], ["Action"], ["Product"], ["Price", 1], ["Items after", 1], ["Partition / offset", 1]],
      d.history.map((e) => [time(e.timestamp), e.action.replace(/_/g, " "), e.product_title, e.product_price, e.items_after, `${e.partition} / ${e.offset}`]));
  } else {
    $("drill-title").textContent = `${title}: the ${d.events.length} latest events`;
    table("drill-table", [["Time (event)"], ["Action"], ["Product"], ["Price", 1], ["Customer", 1], ["Partition / offset", 1]],
      d.events.map((e) => [time(e.timestamp), e.action.replace(/_/g, " "), e.product_title, e.product_price, e.customer_id, `${e.partition} / ${e.offset}`]));
  }
  $("drill").dataset.loaded = path;
}

document.addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-drill]");
  if (row) drill(row.dataset.drill, row.dataset.title);
});

// The range of event time the page shows lives in its URL (?last=1h, or ?from=…&to=…), so a
// view can be shared; none (or last=all) is all of time, straight from the live snapshot.
// Otherwise the tiles, products, categories, price bands, age groups and the timeline come
// from /api/range (docs/gateway.md, "Ranges"), fetched again after each live update while
// the range ends with the latest event.
function rangeQuery() {
  const p = new URLSearchParams(location.search);
  if (p.get("from")) return `from=${encodeURIComponent(p.get("from"))}` + (p.get("to") ? `&to=${encodeURIComponent(p.get("to"))}` : "");
  const last = p.get("last");
  return last && last !== "all" ? `last=${encodeURIComponent(last)}` : null;
}

function setRange(params) {
  const p = new URLSearchParams(location.search);
  ["last", "from", "to"].forEach((k) => p.delete(k));
  Object.entries(params).forEach(([k, v]) => v && p.set(k, v));
  history.pushState(null, "", `${location.pathname}?${p}`.replace(/\?$/, ""));
  state.range = null;
  loadRange();
}

// A range is read at most once at a time, and after a live update no sooner than 1 s, or four
// times what the last read took, after the last one started: a month of a large log takes a
// few hundred milliseconds to sum.
let rangeLoading = false;
let rangeAgain = false;
let rangeStarted = 0;
let rangeCost = 0;
let rangeTimer = null;
function refreshRange() {
  if (rangeTimer) return;
  const wait = Math.max(0, rangeStarted + Math.max(1000, 4 * rangeCost) - Date.now());
  rangeTimer = setTimeout(() => { rangeTimer = null; loadRange(); }, wait);
}

async function loadRange() {
  const q = rangeQuery();
  const p = new URLSearchParams(location.search);
  document.querySelectorAll("#range button[data-last]").forEach((b) =>
    b.setAttribute("aria-pressed", String(q ? !p.get("from") && b.dataset.last === p.get("last") : b.dataset.last === "all")));
  if (!q) { state.range = null; $("range-note").textContent = ""; scheduleRender(); return; }
  if (rangeLoading) { rangeAgain = true; return; }
  rangeLoading = true;
  rangeStarted = Date.now();
  try {
    const r = await fetch(api(`range?${q}`));
    if (!r.ok) {
      state.range = null;
      $("range-note").textContent = `${r.status}: ${await r.text()}`;
    } else if (rangeQuery() === q) {
      state.range = await r.json();
      state.range.query = q;
      const b = state.range.range;
      $("range-note").textContent = `${upToMinute(b.from)} – ${upToMinute(b.to)} UTC, by the ${b.grain}; seasonal charts, insights, customers and carts are all time`;
    }
  } catch (e) {
    $("range-note").textContent = `the range could not be read: ${e}`;
  } finally {
    rangeLoading = false;
    rangeCost = Date.now() - rangeStarted;
  }
  scheduleRender();
  if (rangeAgain) { rangeAgain = false; loadRange(); }
}

const upToMinute = (t) => t.replace("T", " ").slice(0, 16);

document.getElementById("range").addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (!b) return;
  if (b.dataset.last) setRange({ last: b.dataset.last === "all" ? null : b.dataset.last });
  else if (b.id === "range-apply" && $("range-from").value) {
    // The inputs are read as UTC, as the page shows every time.
    const utc = (v) => (v ? new Date(v + "Z").toISOString().replace(".000Z", "Z") : null);
    setRange({ from: utc($("range-from").value), to: utc($("range-to").value) });
  }
});
window.addEventListener("popstate", () => { state.range = null; loadRange(); });

function renderTiles(k) {
  $("tiles").innerHTML = TILES.map(([key, label, f]) =>
    `<div class="tile" data-kpi="${key}" data-value="${esc(k?.[key] ?? "")}"><div class="label">${esc(label)}</div><div class="value">${esc(f(k?.[key]))}</div></div>`).join("");
  $("watermark").textContent = k?.watermark ? "data up to " + new Date(k.watermark).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "";
}

function bars(id, labels, series, yNames) {
  const c = chart(id);
  if (!c) return;
  c.setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { fontSize: 11 } },
    grid: { left: 48, right: 48, top: 28, bottom: 24 },
    xAxis: { type: "category", data: labels },
    yAxis: yNames.map((name) => ({ type: "value", name, nameTextStyle: { fontSize: 10 } })),
    series,
  }, true);
}

// A bar of the timeline (a minute, or a range's bucket) opens its events from the log.
function timelineClicks(c) {
  if (!c.cartflowClick) {
    c.on("click", (p) => {
      const r = state.range ? rangeRows[p.dataIndex] : timelineRows[p.dataIndex];
      if (!r) return;
      const from = new Date(r.bucket);
      const to = new Date(from.getTime() + 1000 * (r.seconds || 60));
      drill(`events?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}&limit=100`, `${r.seconds > 60 ? "bucket" : "minute"} ${r.bucket.slice(0, 16).replace("T", " ")}`);
    });
    c.cartflowClick = true;
  }
}

// The live timeline: carts started per minute, their abandonment rate, and for settled
// minutes the rate of the 15 minutes ending there against the usual rate of that hour; the
// minutes the gateway marked (beyond --change-share) are shaded (docs/gateway.md, "timeline").
let timelineRows = [];
function renderTimeline(rows) {
  const c = chart("chart-timeline");
  const marked = rows.filter((r) => r.marked);
  const el = $("chart-timeline");
  el.dataset.minutes = rows.length;
  el.dataset.marked = marked.length;
  $("timeline-note").textContent = marked.length ? `${marked.length} minutes marked as a change in abandonment` : "";
  if (!c) return;
  timelineRows = rows;
  timelineClicks(c);
  const label = (r) => r.bucket.slice(11, 16);
  c.setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { fontSize: 11 } },
    grid: { left: 48, right: 48, top: 28, bottom: 24 },
    xAxis: { type: "category", data: rows.map(label) },
    yAxis: [{ type: "value", name: "carts", nameTextStyle: { fontSize: 10 } },
      { type: "value", name: "rate", min: 0, max: 1, nameTextStyle: { fontSize: 10 } }],
    series: [
      { name: "carts started", type: "bar", data: rows.map((r) => r.carts),
        markArea: { itemStyle: { color: "#f5a62333" }, data: marked.map((r) => [{ xAxis: label(r) }, { xAxis: label(r) }]) } },
      { name: "abandonment, last 15 min", type: "line", yAxisIndex: 1, connectNulls: false, data: rows.map((r) => r.recent_rate) },
      { name: "usual for the hour", type: "line", yAxisIndex: 1, lineStyle: { type: "dashed" }, data: rows.map((r) => r.usual_rate) },
    ],
  }, true);
}

// A range's timeline: carts started per bucket and their abandonment rate; a bucket's bar
// opens its events.
let rangeRows = [];
let rangeMetrics = { "purchased carts": false, "abandoned carts": false, revenue: false };
function renderRangeTimeline(r) {
  const c = chart("chart-timeline");
  const rows = r.timeline || [];
  const b = r.range;
  const el = $("chart-timeline");
  el.dataset.range = r.query;
  el.dataset.buckets = rows.length;
  const width = b.bucket_seconds >= 86400 ? `${b.bucket_seconds / 86400} d` : b.bucket_seconds >= 3600 ? `${b.bucket_seconds / 3600} h` : `${b.bucket_seconds / 60} min`;
  $("timeline-title").textContent = `${upToMinute(b.from)} – ${upToMinute(b.to)} UTC, by ${width}`;
  $("timeline-note").textContent = "";
  if (!c) return;
  timelineClicks(c);
  rangeRows = rows.map((row) => ({ ...row, seconds: b.bucket_seconds }));
  const label = (row) => (b.bucket_seconds >= 86400 ? row.bucket.slice(5, 10) : b.bucket_seconds >= 3600 ? row.bucket.slice(5, 13).replace("T", " ") + "h" : row.bucket.slice(11, 16));
  // The legend chooses the metrics shown; the choice is kept across updates.
  if (!c.cartflowLegend) {
    c.on("legendselectchanged", (e) => { if (state.range) rangeMetrics = e.selected; });
    c.cartflowLegend = true;
  }
  c.setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { fontSize: 11 }, selected: rangeMetrics },
    grid: { left: 48, right: 48, top: 28, bottom: 24 },
    xAxis: { type: "category", data: rows.map(label) },
    yAxis: [{ type: "value", name: "carts", nameTextStyle: { fontSize: 10 } },
      { type: "value", name: "rate", min: 0, max: 1, nameTextStyle: { fontSize: 10 } },
      { type: "value", show: false }, { type: "value", show: false }],
    series: [
      { name: "carts started", type: "bar", data: rows.map((row) => row.carts) },
      { name: "purchased carts", type: "bar", data: rows.map((row) => row.purchased_carts) },
      { name: "abandoned carts", type: "bar", data: rows.map((row) => row.abandoned_carts) },
      { name: "cart abandonment", type: "line", yAxisIndex: 1, connectNulls: false, data: rows.map((row) => row.cart_abandonment_rate) },
      { name: "events", type: "line", yAxisIndex: 2, showSymbol: false, lineStyle: { opacity: 0.6 }, data: rows.map((row) => row.events) },
      { name: "revenue", type: "line", yAxisIndex: 3, showSymbol: false, data: rows.map((row) => row.revenue) },
    ],
  }, true);
}

function render() {
  const live = state.data;
  if (!live) return;
  // A range answers these keys; the rest stays all of time.
  const r = state.range;
  const d = r ? { ...live, kpis: { ...r.kpis, watermark: live.kpis?.watermark }, products: r.products, categories: r.categories,
    abandoned_products: r.abandoned_products, price_bands: r.price_bands, age_groups: r.age_groups } : live;
  const k = d.kpis || {};
  renderTiles(k);
  if (r) renderRangeTimeline(r);
  else {
    $("timeline-title").textContent = "The last hour of event time, by minute";
    delete $("chart-timeline").dataset.range;
    renderTimeline(d.timeline || []);
  }

  $("insights").innerHTML = (d.insights || []).map((i) =>
    `<li data-rank="${i.rank}"><b>${esc(i.finding)}: ${esc(i.subject)}</b> — ${esc(i.evidence)}</li>`).join("") || "<li>No findings yet.</li>";

  const hours = d.hour_of_day || [];
  bars("chart-hour", hours.map((h) => h.hour_of_day), [
    { name: "events", type: "bar", data: hours.map((h) => h.events) },
    { name: "revenue", type: "line", yAxisIndex: 1, data: hours.map((h) => h.revenue) },
  ], ["events", "revenue"]);
  bars("chart-abandon-hour", hours.map((h) => h.hour_of_day), [
    { name: "abandoned carts", type: "bar", data: hours.map((h) => h.abandoned_carts) },
    { name: "abandonment rate", type: "line", yAxisIndex: 1, data: hours.map((h) => h.cart_abandonment_rate) },
  ], ["carts", "rate"]);
  const days = d.day_of_week || [];
  bars("chart-day", days.map((x) => x.day.slice(0, 3)), [
    { name: "events", type: "bar", data: days.map((x) => x.events) },
    { name: "revenue", type: "line", yAxisIndex: 1, data: days.map((x) => x.revenue) },
  ], ["events", "revenue"]);
  const months = d.month || [];
  bars("chart-month", months.map((x) => x.month_name.slice(0, 3)), [
    { name: "events", type: "bar", data: months.map((x) => x.events) },
    { name: "revenue", type: "line", yAxisIndex: 1, data: months.map((x) => x.revenue) },
  ], ["events", "revenue"]);
  const bands = d.price_bands || [];
  bars("chart-bands", bands.map((b) => b.band), [
    { name: "items abandoned", type: "bar", data: bands.map((b) => b.items_abandoned) },
    { name: "item abandonment rate", type: "line", yAxisIndex: 1, data: bands.map((b) => b.item_abandonment_rate) },
  ], ["items", "rate"]);

  const grid = d.day_hour || [];
  const heat = chart("chart-heatmap");
  if (heat) {
    heat.setOption({
      animation: false,
      tooltip: { position: "top" },
      grid: { left: 40, right: 12, top: 8, bottom: 60 },
      xAxis: { type: "category", data: [...Array(24).keys()] },
      yAxis: { type: "category", data: DAYS },
      visualMap: { min: 0, max: Math.max(1, ...grid.map((g) => g[2])), calculable: true, orient: "horizontal", left: "center", bottom: 0, itemHeight: 120 },
      series: [{ type: "heatmap", data: grid.map(([dow, h, v]) => [h, dow - 1, v]) }],
    }, true);
  }

  // In a range, a product opens its events in that range.
  const within = r ? `&from=${encodeURIComponent(r.range.from)}&to=${encodeURIComponent(r.range.to)}` : "";
  const leaders = (d.products || []).slice(0, 10);
  table("products", [["Product"], ["Added", 1], ["Bought", 1], ["Revenue", 1], ["Add→buy", 1]],
    leaders.map((p) => [p.title, fmt.n(p.adds), fmt.n(p.purchases), fmt.money(p.revenue), fmt.pct(p.add_to_purchase_rate)]),
    leaders.map((p) => `events?product_id=${p.product_id}${within}`));
  const abandoned = d.abandoned_products || [];
  table("abandoned", [["Product"], ["Abandoned", 1], ["Rate", 1], ["Value", 1]],
    abandoned.map((p) => [p.title, fmt.n(p.items_abandoned), fmt.pct(p.item_abandonment_rate), fmt.money(p.abandoned_value)]),
    abandoned.map((p) => `events?product_id=${p.product_id}${within}`));
  const carts = (d.abandoned_carts || []).slice(0, 10);
  table("carts", [["Cart"], ["Customer", 1], ["Items", 1], ["Value", 1], ["Last event"]],
    carts.map((c) => [c.cart_key.slice(0, 13), c.customer_id, fmt.n(c.items), fmt.money(c.value), c.last_at.replace("T", " ").slice(0, 16)]),
    carts.map((c) => `carts/${encodeURIComponent(c.cart_key)}`));
  table("categories", [["Category"], ["Added", 1], ["Bought", 1], ["Revenue", 1], ["Abandoned", 1]],
    (d.categories || []).map((c) => [c.category, fmt.n(c.adds), fmt.n(c.purchases), fmt.money(c.revenue), fmt.pct(c.item_abandonment_rate)]));
  table("ages", [["Age"], ["Customers", 1], ["Revenue", 1], ["Cart→buy", 1], ["Abandoned", 1]],
    (d.age_groups || []).map((a) => [a.age_group, fmt.n(a.customers), fmt.money(a.revenue), fmt.pct(a.cart_to_purchase_rate), fmt.pct(a.cart_abandonment_rate)]));
  const customers = (d.customers || []).slice(0, 10);
  table("customers", [["Customer"], ["Revenue", 1], ["Orders", 1], ["AOV", 1], ["RFM", 1], ["Segment"]],
    customers.map((c) => [c.name || "#" + c.customer_id, fmt.money(c.revenue), fmt.n(c.orders), fmt.money(c.average_order_value), c.rfm_score, c.segment]),
    customers.map((c) => `events?customer_id=${c.customer_id}`));
}

function renderFeed() {
  table("feed-table", [["Time (event)"], ["Action"], ["Product"], ["Price", 1], ["Customer", 1]],
    state.feed.map((e) => [e.timestamp.replace("T", " ").slice(0, 19), e.action.replace(/_/g, " "), e.product_title, e.product_price, e.customer_id]));
  const secs = Math.max(1, (Date.now() - state.feedSince) / 1000);
  $("feed-rate").textContent = `${(state.feedCount / secs).toFixed(1)} events/s`;
}

let timer = null;
function scheduleRender() {
  if (timer) return;
  timer = requestAnimationFrame(() => { timer = null; render(); });
}

// The feed may bring hundreds of messages a second (one per 2 ms tick at load): the table is
// drawn once per frame from what arrived, not once per message.
let feedTimer = null;
function scheduleFeed() {
  if (feedTimer) return;
  feedTimer = requestAnimationFrame(() => { feedTimer = null; renderFeed(); });
}

function connect(attempt) {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const since = state.data && state.seq != null ? `?since=${state.seq}` : "";
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${since}`;
  const protocols = ["cartflow.v1"].concat(token ? ["cartflow.token." + token] : []);
  const ws = new WebSocket(url, protocols);
  // For debugging (and the browser test): the live socket.
  window.cartflowSocket = ws;
  setState(attempt ? "reconnecting…" : "connecting…", "");
  ws.onopen = () => { setState("live", "live"); attempt = 0; };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "snapshot") {
      state.data = msg.data || {};
      state.seq = msg.seq;
      document.body.dataset.seq = msg.seq;
      document.body.dataset.snapshots = Number(document.body.dataset.snapshots || 0) + 1;
      scheduleRender();
    } else if (msg.type === "resume") {
      // covered: the missed deltas follow; otherwise a snapshot does.
      document.body.dataset.resumed = msg.covered ? "deltas" : "snapshot";
    } else if (msg.type === "delta") {
      state.data = Object.assign(state.data || {}, msg.changes);
      state.seq = msg.seq;
      document.body.dataset.seq = msg.seq;
      if (state.range?.range.ends_now) refreshRange();
      scheduleRender();
    } else if (msg.type === "feed") {
      state.feedCount += msg.count;
      state.feed = msg.events.slice().reverse().concat(state.feed).slice(0, 40);
      scheduleFeed();
    }
  };
  ws.onclose = (e) => {
    setState(`disconnected (${e.code}); retrying`, "down");
    setTimeout(() => connect(attempt + 1), Math.min(10000, 500 * 2 ** Math.min(attempt, 5)));
  };
}

window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
renderTiles(null);
loadRange();
connect(0);
