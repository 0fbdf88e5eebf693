// Live view of a Scaler scheduler's monitor stream, as served by scaler_ui.
// Seeds its charts from /api/history, then follows /api/stream (Server-Sent Events); falls back to
// polling /api/status where EventSource is missing.
"use strict";

const CHART_WINDOW_SECONDS = 300;   // what the server keeps: about five minutes
const MIN_CHART_WINDOW_SECONDS = 30; // a young history fills the chart instead of a sliver of it
const TICK_STEPS_SECONDS = [5, 10, 15, 30, 60, 120];
const STALE_AFTER_SECONDS = 3;      // the scheduler sends two statuses a second
const THROUGHPUT_AVERAGE_SECONDS = 5;
const TIMELINE_ROW_HEIGHT = 20;
const TIMELINE_LABEL_WIDTH = 210;
const TASK_STATES = ["pending", "running", "succeeded", "failed", "cancelled"];

const statuses = [];          // oldest first, each a status as /api/status serves it
let lastReceivedAt = 0;       // browser clock: the scheduler's clock may differ from ours

function $(id) { return document.getElementById(id); }

function formatCount(value) { return Number(value).toLocaleString("en-US"); }

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
}

function shortId(id, width) {
  // keep both ends: the front names the host, the end tells the workers of one host apart
  if (id.length <= width) return id;
  const tail = Math.floor((width - 1) / 2);
  return id.slice(0, width - 1 - tail) + "\u2026" + id.slice(id.length - tail);
}

// --- receiving ------------------------------------------------------------------------------------

function addStatus(status) {
  const newest = statuses[statuses.length - 1];
  if (newest && status.timestamp <= newest.timestamp) {
    if (status.timestamp < newest.timestamp - 1) statuses.length = 0;  // clock went back: start over
    else return;  // already have it (history and stream overlap)
  }
  statuses.push(status);
  const oldest = status.timestamp - CHART_WINDOW_SECONDS;
  while (statuses.length > 2 && statuses[0].timestamp < oldest) statuses.shift();
}

function receive(status) {
  lastReceivedAt = Date.now();
  addStatus(status);
  showNumbers(status);
  drawThroughput();
  drawTimelines();
  showConnection();
}

function connect() {
  fetch("api/history").then((reply) => reply.json()).then((history) => {
    $("monitor-address").textContent = history.monitor_address;
    history.statuses.forEach(addStatus);
  }).catch(() => {}).finally(() => {
    if (window.EventSource) {
      const stream = new EventSource("api/stream");
      stream.onmessage = (event) => receive(JSON.parse(event.data));
    } else {
      setInterval(() => fetch("api/status").then((reply) => reply.ok ? reply.json() : null)
        .then((status) => { if (status) receive(status); }).catch(() => {}), 500);
    }
  });
  setInterval(showConnection, 1000);
  window.addEventListener("resize", () => { drawThroughput(); drawTimelines(); });
}

function showConnection() {
  const badge = $("connection");
  if (!lastReceivedAt) return;
  const silentFor = (Date.now() - lastReceivedAt) / 1000;
  const live = silentFor <= STALE_AFTER_SECONDS;
  badge.className = "badge " + (live ? "live" : "stale");
  badge.textContent = live ? "live" : "no status for " + silentFor.toFixed(0) + " s";
  const newest = statuses[statuses.length - 1];
  if (newest) $("last-update").textContent = "updated " + new Date(newest.timestamp * 1000).toLocaleTimeString();
}

// --- numbers and tables ---------------------------------------------------------------------------

function showNumbers(status) {
  for (const name of TASK_STATES) $("count-" + name).textContent = formatCount(status.tasks[name]);
  $("count-failed").parentElement.classList.toggle("bad", status.tasks.failed > 0);
  $("worker-count").textContent = formatCount(status.workers.length);
  $("client-count").textContent = formatCount(status.clients);
  $("scheduler-load").textContent =
    status.scheduler.cpu_percent.toFixed(1) + "% / " + formatBytes(status.scheduler.rss_bytes);
  $("throughput-now").textContent = currentThroughput().toFixed(1);
  showWorkers(status.workers);
  showHostStores(status.host_stores || []);
  showManagers(status.managers || []);
  if (status.sent) showMessageCounts($("messages-sent"), status.sent);
  if (status.received) showMessageCounts($("messages-received"), status.received);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function showWorkers(workers) {
  const body = $("workers").tBodies[0];
  const rows = [...workers].sort((a, b) => a.id.localeCompare(b.id)).map((worker) => {
    const row = document.createElement("tr");
    row.className = "worker-row";
    row.dataset.workerId = worker.id;
    cell(row, shortId(worker.id, 40)).title = worker.id;
    cell(row, worker.hostname);
    cell(row, worker.pid);
    const cpu = cell(row, worker.cpu_percent.toFixed(1) + "%");
    const bar = document.createElement("span");
    bar.className = "cpu-bar";
    bar.appendChild(document.createElement("span")).style.width = Math.min(100, worker.cpu_percent) + "%";
    cpu.appendChild(bar);
    cell(row, formatBytes(worker.rss_bytes));
    cell(row, worker.memory_limit_bytes ? formatBytes(worker.memory_limit_bytes) : "-").className = "worker-limit";
    cell(row, formatBytes(worker.held_bytes || 0));
    for (const name of ["free", "sent", "queued", "running", "blocked"]) {
      const shown = name === "free" && worker.paused ? "paused" : formatCount(worker[name]);
      cell(row, shown).className = "worker-" + name;
    }
    return row;
  });
  body.replaceChildren(...rows);
}

function showHostStores(stores) {
  const rows = stores.map((store) => {
    const row = document.createElement("tr");
    row.className = "host-store-row";
    cell(row, shortId(store.cluster, 40)).title = store.cluster;
    cell(row, store.hostname);
    cell(row, formatBytes(store.memory_bytes)).className = "store-memory";
    cell(row, formatBytes(store.memory_limit_bytes));
    cell(row, formatBytes(store.disk_bytes)).className = "store-disk";
    return row;
  });
  $("host-stores").tBodies[0].replaceChildren(...rows);
}

function showManagers(managers) {
  $("managers-panel").hidden = managers.length === 0;
  const rows = [];
  for (const manager of managers) {
    const groups = manager.groups.length ? manager.groups : [null];
    for (const group of groups) {
      const row = document.createElement("tr");
      row.className = "manager-row";
      row.dataset.managerId = manager.id;
      cell(row, manager.id);
      cell(row, manager.kind);
      cell(row, group ? shortId(group.id, 40) : "(no group)");
      cell(row, group ? group.state : "");
      cell(row, group ? formatCount(group.workers) : "");
      cell(row, group ? formatCount(group.busy_workers) : "");
      cell(row, group ? group.external_id : "");
      rows.push(row);
    }
  }
  $("managers").tBodies[0].replaceChildren(...rows);
}

function showMessageCounts(table, counts) {
  const rows = Object.keys(counts).sort().map((name) => {
    const row = document.createElement("tr");
    cell(row, name);
    cell(row, formatCount(counts[name]));
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
}

// --- throughput -----------------------------------------------------------------------------------

function throughputSeries() {
  // succeeded per second between consecutive statuses; a counter that drops (a new scheduler) is 0
  const series = [];
  for (let index = 1; index < statuses.length; index += 1) {
    const before = statuses[index - 1], after = statuses[index];
    const seconds = after.timestamp - before.timestamp;
    if (seconds <= 0) continue;
    const done = Math.max(0, after.tasks.succeeded - before.tasks.succeeded);
    series.push({ time: after.timestamp, rate: done / seconds });
  }
  return series;
}

function currentThroughput() {
  const newest = statuses[statuses.length - 1];
  if (!newest) return 0;
  const start = statuses.find((status) => status.timestamp >= newest.timestamp - THROUGHPUT_AVERAGE_SECONDS);
  const seconds = newest.timestamp - start.timestamp;
  return seconds > 0 ? Math.max(0, newest.tasks.succeeded - start.tasks.succeeded) / seconds : 0;
}

function prepareCanvas(canvas, cssHeight) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  canvas.style.height = cssHeight + "px";
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(cssHeight * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, cssHeight);
  context.font = "11px system-ui, sans-serif";
  return { context, width, height: cssHeight };
}

function chartWindowSeconds() {
  if (statuses.length < 2) return MIN_CHART_WINDOW_SECONDS;
  const kept = statuses[statuses.length - 1].timestamp - statuses[0].timestamp;
  return Math.min(CHART_WINDOW_SECONDS, Math.max(MIN_CHART_WINDOW_SECONDS, kept));
}

function timeLabel(secondsAgo) {
  if (!secondsAgo) return "now";
  return secondsAgo % 60 ? "-" + secondsAgo + " s" : "-" + secondsAgo / 60 + " min";
}

function timeAxis(context, left, width, top, windowSeconds) {
  const step = TICK_STEPS_SECONDS.find((seconds) => windowSeconds / seconds <= 6) || 60;
  context.fillStyle = "#6b7480";
  context.textAlign = "center";
  for (let secondsAgo = Math.floor(windowSeconds / step) * step; secondsAgo >= 0; secondsAgo -= step) {
    const x = left + (1 - secondsAgo / windowSeconds) * width;
    context.fillText(timeLabel(secondsAgo), Math.min(Math.max(x, left + 16), left + width - 16), top);
  }
}

function drawThroughput() {
  const canvas = $("throughput-chart");
  const { context, width, height } = prepareCanvas(canvas, 160);
  const series = throughputSeries();
  const newest = statuses[statuses.length - 1];
  const peak = series.reduce((max, point) => Math.max(max, point.rate), 0);
  $("throughput-peak").textContent = peak.toFixed(1);
  canvas.dataset.peak = peak.toFixed(3);
  const left = 44, plotWidth = width - left - 8, plotTop = 8, plotHeight = height - 32;
  const ceiling = peak > 0 ? peak * 1.1 : 1;
  context.strokeStyle = "#dde1e6";
  context.fillStyle = "#6b7480";
  context.textAlign = "right";
  for (const fraction of [0, 0.5, 1]) {
    const y = plotTop + plotHeight * (1 - fraction);
    context.beginPath(); context.moveTo(left, y); context.lineTo(left + plotWidth, y); context.stroke();
    context.fillText((ceiling * fraction).toFixed(ceiling < 10 ? 1 : 0), left - 6, y + 4);
  }
  if (!newest) return;
  const windowSeconds = chartWindowSeconds();
  timeAxis(context, left, plotWidth, height - 6, windowSeconds);
  if (series.length < 1) return;
  const xOf = (time) => left + (1 - (newest.timestamp - time) / windowSeconds) * plotWidth;
  const yOf = (rate) => plotTop + plotHeight * (1 - rate / ceiling);
  context.beginPath();
  context.moveTo(xOf(series[0].time), yOf(0));
  for (const point of series) context.lineTo(xOf(point.time), yOf(point.rate));
  context.lineTo(xOf(series[series.length - 1].time), yOf(0));
  context.closePath();
  context.fillStyle = "rgba(46, 157, 91, 0.18)";
  context.fill();
  context.beginPath();
  context.moveTo(xOf(series[0].time), yOf(series[0].rate));
  for (const point of series.slice(1)) context.lineTo(xOf(point.time), yOf(point.rate));
  context.strokeStyle = "#2e9d5b";
  context.lineWidth = 1.5;
  context.stroke();
}

// --- per-worker timelines -------------------------------------------------------------------------

function workerActivity(before, after) {
  // Statuses are half a second apart and tasks are often shorter, so a worker also counts as busy
  // when the scheduler sent it tasks in between, even if it is idle again at both ends.
  if (!after) return "gone";
  if (after.blocked > 0) return "blocked";
  if (after.running > 0 || after.queued > 0) return "busy";
  if (before && after.sent > before.sent) return "busy";
  return "idle";
}

function timelineSpans() {
  // worker id -> list of {from, to, activity}, in the order workers first appeared
  const spans = new Map();
  for (let index = 1; index < statuses.length; index += 1) {
    const before = new Map(statuses[index - 1].workers.map((worker) => [worker.id, worker]));
    const after = new Map(statuses[index].workers.map((worker) => [worker.id, worker]));
    for (const id of new Set([...before.keys(), ...after.keys()])) {
      if (!spans.has(id)) spans.set(id, []);
      const workerSpans = spans.get(id), previous = workerSpans[workerSpans.length - 1];
      const span = { from: statuses[index - 1].timestamp, to: statuses[index].timestamp,
                     activity: workerActivity(before.get(id), after.get(id)) };
      // one rectangle per stretch of the same activity: adjacent thin ones leave seams when drawn
      if (previous && previous.activity === span.activity && previous.to === span.from) previous.to = span.to;
      else workerSpans.push(span);
    }
  }
  for (const worker of statuses.length ? statuses[statuses.length - 1].workers : []) {
    if (!spans.has(worker.id)) spans.set(worker.id, []);
  }
  return spans;
}

const ACTIVITY_COLORS = { busy: "#2e9d5b", blocked: "#e0a526", idle: "#e4e8ec", gone: "#b9c0c8" };

function drawTimelines() {
  const canvas = $("timeline-chart");
  const spans = timelineSpans();
  const height = Math.max(1, spans.size) * TIMELINE_ROW_HEIGHT + 22;
  const { context, width } = prepareCanvas(canvas, height);
  const newest = statuses[statuses.length - 1];
  if (!newest) return;
  const plotWidth = width - TIMELINE_LABEL_WIDTH - 8;
  const windowSeconds = chartWindowSeconds();
  const xOf = (time) => TIMELINE_LABEL_WIDTH + (1 - (newest.timestamp - time) / windowSeconds) * plotWidth;
  let row = 0, busyWorkers = 0;
  for (const [id, workerSpans] of spans) {
    const y = row * TIMELINE_ROW_HEIGHT;
    context.fillStyle = "#1d232b";
    context.textAlign = "left";
    context.fillText(shortId(id, 32), 0, y + TIMELINE_ROW_HEIGHT - 7);
    context.fillStyle = ACTIVITY_COLORS.idle;
    context.fillRect(TIMELINE_LABEL_WIDTH, y + 3, plotWidth, TIMELINE_ROW_HEIGHT - 6);
    for (const span of workerSpans) {
      if (span.activity === "idle") continue;  // the row's background already is idle
      const left = Math.max(TIMELINE_LABEL_WIDTH, xOf(span.from));
      context.fillStyle = ACTIVITY_COLORS[span.activity];
      // at least a pixel wide, so a short burst of work stays visible in a five-minute window
      context.fillRect(left, y + 3, Math.max(1, xOf(span.to) - left), TIMELINE_ROW_HEIGHT - 6);
    }
    if (workerSpans.some((span) => span.activity === "busy" || span.activity === "blocked")) busyWorkers += 1;
    row += 1;
  }
  canvas.dataset.workers = String(spans.size);
  canvas.dataset.busyWorkers = String(busyWorkers);
  timeAxis(context, TIMELINE_LABEL_WIDTH, plotWidth, height - 6, windowSeconds);
}

connect();
