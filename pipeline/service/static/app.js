// marketlake admin page: plain JavaScript, no build step. The API token is asked for once,
// kept in this tab's sessionStorage and sent only as an Authorization header (never in a URL).
// Run events are read with fetch() streaming, since EventSource cannot send that header.
"use strict";

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "marketlake.token";
const INDICATORS = [
  ["sma(20)", "SMA 20", true], ["sma(50)", "SMA 50", false], ["ema(21)", "EMA 21", false],
  ["bbands(20,2)", "Bollinger 20,2", true], ["rsi(14)", "RSI 14", true],
  ["macd(12,26,9)", "MACD 12,26,9", false],
];
const COLORS = ["#2962ff", "#ff6d00", "#00897b", "#d500f9", "#6d4c41", "#c51162"];
let watching = null;  // AbortController of the run being watched
let charts = [];

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, opts = {}) {
  const headers = Object.assign({ "Authorization": "Bearer " + token() }, opts.headers || {});
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("/api/v1" + path, {
    method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (res.status === 401) { showTokenForm(true); }
  return { status: res.status, ok: res.ok, body };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) {
    node.append(c instanceof Node ? c : (c === null || c === undefined ? "" : String(c)));
  }
  return node;
}

function fmtTime(iso) { return iso ? iso.replace("T", " ").slice(0, 19) + (/\+00:00$/.test(iso) ? " UTC" : "") : ""; }

function showTokenForm(show) {
  $("#token-form").classList.toggle("hidden", !show);
  $("#token-forget").classList.toggle("hidden", show);
}

// -- health, status, schedule ---------------------------------------------------------------
async function refreshHealth() {
  const res = await fetch("/api/v1/sync/health");
  const body = await res.json().catch(() => null);
  const d = body && body.data;
  if (!d) return;
  const pill = $("#health");
  pill.textContent = d.status;
  pill.className = "pill " + d.status;
  $("#health-summary").textContent = d.summary;
}

async function refreshStatus() {
  const r = await api("/sync/status");
  if (!r.ok) return;
  const d = r.body.data;
  const tbody = $("#segments tbody");
  tbody.replaceChildren();
  const segs = new Set();
  for (const s of d.segments) {
    segs.add(s.segment);
    const tr = el("tr", { class: s.overdue ? "overdue" : "" });
    tr.append(el("td", {}, s.segment), el("td", {}, s.timeframe), el("td", {}, s.kind),
      el("td", { class: "num" }, s.symbols), el("td", { class: "num" }, s.failed),
      el("td", { class: "num" }, (s.rows || 0).toLocaleString()), el("td", {}, fmtTime(s.last_ts)),
      el("td", { class: "num" }, s.freshness_hours === null ? "" : s.freshness_hours.toFixed(1)),
      el("td", { class: "num" }, s.overdue), el("td", { class: "err" }, s.last_error || ""));
    tbody.append(tr);
  }
  const sel = $("#segment");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const s of segs) if (!have.has(s)) sel.append(el("option", { value: s }, s));
  const dl = $("#schedule");
  dl.replaceChildren();
  const rows = [
    ["schedule", d.enabled ? (d.sync_interval ? "every " + d.sync_interval : d.cron + " (" + d.timezone + ")") : "off"],
    ["next run", d.next_sync ? fmtTime(d.next_sync) + (d.next_sync_schedule ? " (" + d.next_sync_schedule + ")" : "") : "none"],
    ["last sync", d.last_sync ? fmtTime(d.last_sync) + " · " + d.last_status : "never"],
    ["last error", d.last_error || "none"],
  ];
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
  if (d.is_running && d.run && !watching) watch(d.run.run_id);
}

async function refreshLogs() {
  const failed = $("#failed-only").checked;
  const r = await api("/sync/logs?limit=25" + (failed ? "&failed=true" : ""));
  if (!r.ok) return;
  const tbody = $("#logs tbody");
  tbody.replaceChildren();
  for (const l of r.body.data.logs) {
    tbody.append(el("tr", {},
      el("td", {}, fmtTime(l.completed_at || l.started_at)), el("td", {}, l.run_id),
      el("td", {}, l.task_name), el("td", {}, l.status), el("td", { class: "num" }, l.rows_updated),
      el("td", { class: "num" }, l.duration_seconds === null ? "" : l.duration_seconds.toFixed(2)),
      el("td", { class: "err" }, l.error_message || "")));
  }
}

// -- a run and its events ---------------------------------------------------------------------
function setProgress(p, status) {
  if (!p) return;
  // percent is the server's share of the whole run (steps included); it never decreases
  const pct = status && status !== "running" && status !== "starting" ? 100 : Math.min(100, p.percent || 0);
  const bar = $("#progress-bar");
  bar.style.width = pct.toFixed(1) + "%";
  bar.dataset.percent = pct.toFixed(1);
  const eta = p.eta_seconds ? ", ETA " + p.eta_seconds.toFixed(0) + "s" : "";
  const step = p.step ? ` · ${p.step.name}: ${p.step.done}/${p.step.total} tasks` : "";
  $("#progress-text").textContent = `${p.done}/${p.total} ${p.unit || "tasks"}${step} · ${p.rows.toLocaleString()} rows · ` +
    `${p.rows_per_s.toLocaleString()} rows/s${eta}` + (p.current ? " · " + p.current : "");
}

function addTask(t) {
  const li = el("li", { class: t.status === "ok" ? "" : "failed" },
    `${t.status === "ok" ? "✓" : "✗"} ${t.symbol} ${t.timeframe || ""} ${t.kind || ""} ` +
    `${t.rows} rows${t.error ? " – " + t.error : ""}`);
  const list = $("#tasks");
  list.append(li);
  while (list.children.length > 300) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

function finished(final) {
  const bar = $("#progress-bar");
  bar.style.width = "100%";
  bar.dataset.percent = "100.0";
  bar.classList.add(final.status === "failed" ? "failed" : "done");
  const rows = final.rows || {};
  $("#run-info").textContent = `run ${final.run_id}: ${final.status} · inserted ` +
    `${rows.inserted || 0}, updated ${rows.updated || 0}, unchanged ${rows.unchanged || 0}` +
    (final.errors && final.errors.length ? " · " + final.errors[0] : "");
  $("#start").disabled = false;
  refreshStatus(); refreshLogs(); refreshHealth(); loadInstruments();
}

async function watch(runId) {
  if (watching) watching.abort();
  const ctl = new AbortController();
  watching = ctl;
  $("#start").disabled = true;
  $("#tasks").replaceChildren();
  const bar = $("#progress-bar");
  bar.className = "";
  $("#run-info").textContent = "run " + runId + ": running";
  try {
    const res = await fetch(`/api/v1/runs/${encodeURIComponent(runId)}/events`, {
      headers: { "Authorization": "Bearer " + token(), "Accept": "text/event-stream" },
      signal: ctl.signal,
    });
    if (!res.ok) throw new Error("events: HTTP " + res.status);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let type = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
        }
        if (!data) continue;
        const obj = JSON.parse(data);
        if (type === "state") {
          (obj.tasks || []).forEach(addTask);
          setProgress(obj.progress, obj.status);
        } else if (type === "task") addTask(obj);
        else if (type === "progress") setProgress(obj);
        else if (type === "final") finished(obj);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") $("#run-info").textContent = String(e);
  } finally {
    if (watching === ctl) watching = null;
    $("#start").disabled = false;
  }
}

async function startSync(ev) {
  ev.preventDefault();
  const stage = $("#stage").value;
  const body = { stage, scope: $("#scope").value, force: $("#force").checked };
  const seg = $("#segment").value;
  if (seg) body.segments = [seg];
  const syms = $("#symbols").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (syms.length) body.symbols = syms;
  if (stage === "daily") { delete body.scope; delete body.force; }
  const r = await api("/sync", { method: "POST", body });
  if (r.status === 202) watch(r.body.data.run_id);
  else $("#run-info").textContent = (r.body && r.body.error) || "HTTP " + r.status;
}

async function scheduleOn(ev) {
  ev.preventDefault();
  const interval = $("#interval").value.trim(), cron = $("#cron").value.trim();
  const q = new URLSearchParams();
  if (interval) q.set("interval", interval);
  if (cron) { q.set("cron", cron); q.set("timezone", $("#timezone").value.trim() || "UTC"); }
  const r = await api("/sync/start?" + q.toString(), { method: "POST" });
  if (!r.ok) alert((r.body && r.body.error) || "HTTP " + r.status);
  refreshStatus(); refreshHealth();
}

async function scheduleOff() {
  await api("/sync/stop", { method: "POST" });
  refreshStatus(); refreshHealth();
}

// -- chart --------------------------------------------------------------------------------------
async function loadInstruments() {
  const r = await api("/instruments");
  if (!r.ok) return;
  const sel = $("#chart-symbol");
  const keep = sel.value;
  sel.replaceChildren();
  for (const i of r.body.data.instruments) {
    if (!i.timeframes || !i.timeframes.length) continue;
    const o = el("option", { value: i.symbol }, i.symbol);
    o.dataset.timeframes = i.timeframes.join(",");
    sel.append(o);
  }
  if (keep) sel.value = keep;
  fillTimeframes();
}

function fillTimeframes() {
  const opt = $("#chart-symbol").selectedOptions[0];
  const tfs = opt ? opt.dataset.timeframes.split(",") : [];
  const sel = $("#chart-tf");
  const keep = sel.value;
  sel.replaceChildren(...tfs.map((t) => el("option", { value: t }, t)));
  if (tfs.includes(keep)) sel.value = keep; else if (tfs.includes("1D")) sel.value = "1D";
}

function series(data, col, times) {
  const out = [];
  const values = data.columns[col];
  for (let i = 0; i < times.length; i++) if (values[i] !== null) out.push({ time: times[i], value: values[i] });
  return out;
}

function newChart(node, height) {
  const c = LightweightCharts.createChart(node, {
    height, autoSize: true, layout: { background: { color: "#ffffff" }, textColor: "#1d232b" },
    grid: { vertLines: { color: "#eef0f3" }, horzLines: { color: "#eef0f3" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  charts.push(c);
  return c;
}

async function drawChart(ev) {
  if (ev) ev.preventDefault();
  const symbol = $("#chart-symbol").value, tf = $("#chart-tf").value;
  if (!symbol) return;
  const chosen = [...document.querySelectorAll("#indicator-choices input:checked")].map((i) => i.value);
  const q = new URLSearchParams({ timeframe: tf, limit: "400" });
  if (chosen.length) q.set("indicators", chosen.join(","));
  const r = await api(`/bars/${encodeURIComponent(symbol)}?` + q.toString());
  const status = $("#chart-status");
  if (!r.ok) { status.textContent = (r.body && r.body.error) || "HTTP " + r.status; return; }
  const d = r.body.data;
  charts.forEach((c) => c.remove());
  charts = [];
  const times = d.time;
  const main = newChart($("#chart"), 360);
  const candles = main.addCandlestickSeries();
  candles.setData(times.map((t, i) => ({
    time: t, open: d.columns.open[i], high: d.columns.high[i], low: d.columns.low[i], close: d.columns.close[i],
  })));
  let n = 0;
  for (const col of Object.keys(d.columns)) {
    if (/^(sma|ema|bb)_/.test(col)) {
      const line = main.addLineSeries({ color: COLORS[n++ % COLORS.length], lineWidth: 1, priceLineVisible: false, lastValueVisible: false });
      line.setData(series(d, col, times));
    }
  }
  const rsiCols = Object.keys(d.columns).filter((c) => c.startsWith("rsi_"));
  const macdCols = Object.keys(d.columns).filter((c) => c.startsWith("macd"));
  $("#chart-rsi").classList.toggle("hidden", !rsiCols.length);
  $("#chart-macd").classList.toggle("hidden", !macdCols.length);
  if (rsiCols.length) {
    const rc = newChart($("#chart-rsi"), 120);
    rsiCols.forEach((c, i) => rc.addLineSeries({ color: COLORS[i], lineWidth: 1 }).setData(series(d, c, times)));
  }
  if (macdCols.length) {
    const mc = newChart($("#chart-macd"), 120);
    for (const c of macdCols) {
      if (c.startsWith("macd_hist")) mc.addHistogramSeries({ color: "#90a4ae" }).setData(series(d, c, times));
      else mc.addLineSeries({ color: c.startsWith("macd_signal") ? "#ff6d00" : "#2962ff", lineWidth: 1 }).setData(series(d, c, times));
    }
  }
  // keep the panes' time axes together
  for (const c of charts) {
    c.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (!range) return;
      for (const o of charts) if (o !== c) o.timeScale().setVisibleLogicalRange(range);
    });
  }
  main.timeScale().fitContent();
  status.textContent = `drawn ${d.count} bars of ${d.symbol} ${d.timeframe}`;
  status.dataset.bars = String(d.count);
}

// -- start ----------------------------------------------------------------------------------------
function init() {
  const choices = $("#indicator-choices");
  for (const [spec, label, on] of INDICATORS) {
    const box = el("input", { type: "checkbox", value: spec });
    box.checked = on;
    const lab = el("label", { class: "inline" });
    lab.append(box, " " + label);
    choices.append(lab, " ");
  }
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("#token").value.trim();
    $("#token").value = "";
    if (!v) return;
    sessionStorage.setItem(TOKEN_KEY, v);
    showTokenForm(false);
    refreshAll();
  });
  $("#token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showTokenForm(true); });
  $("#sync-form").addEventListener("submit", startSync);
  $("#schedule-form").addEventListener("submit", scheduleOn);
  $("#schedule-off").addEventListener("click", scheduleOff);
  $("#chart-form").addEventListener("submit", drawChart);
  $("#chart-symbol").addEventListener("change", fillTimeframes);
  $("#failed-only").addEventListener("change", refreshLogs);
  showTokenForm(!token());
  refreshHealth();
  if (token()) refreshAll();
  setInterval(refreshHealth, 15000);
  setInterval(() => { if (token() && !watching) { refreshStatus(); refreshLogs(); } }, 10000);
}

async function refreshAll() {
  await Promise.all([refreshStatus(), refreshLogs(), loadInstruments()]);
  if ($("#chart-symbol").value) drawChart();
}

document.addEventListener("DOMContentLoaded", init);
