// FiloDB query page: PromQL box, result table and an SVG line graph over the Prometheus HTTP API.
// Plain JS, no build step, no dependencies.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const NS = "http://www.w3.org/2000/svg";
  const RANGES = { "5m": 300, "15m": 900, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "1d": 86400, "2d": 172800, "1w": 604800 };
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#5f3dc4", "#0b7285"];
  const HISTORY_KEY = "filodb.history";
  const MAX_TABLE_ROWS = 10000;

  let mode = "table";
  let seq = 0; // identifies the latest run; answers to older runs are dropped
  let inflight = null; // AbortController of the running request
  let graph = null; // last graph: {series, start, end, step}
  const hidden = new Set(); // names of series hidden from the graph

  // ---- formatting ----------------------------------------------------------------------------

  function escLabel(v) { return String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n"); }
  /** A series as Prometheus prints it: name{a="b", c="d"}. */
  function seriesName(m) {
    m = m || {};
    const name = m.__name__ || "";
    const rest = Object.keys(m).filter((k) => k !== "__name__").sort().map((k) => `${k}="${escLabel(m[k])}"`).join(", ");
    return rest || !name ? `${name}{${rest}}` : name;
  }
  function colorOf(i) {
    return i < PALETTE.length ? PALETTE[i] : `hsl(${Math.round((i * 137.508) % 360)}, 62%, ${42 + (i % 3) * 8}%)`;
  }
  const SI = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  const SI_SMALL = [[1e-3, "m"], [1e-6, "µ"], [1e-9, "n"]];
  /** A value with an SI suffix; digits: significant digits kept. */
  function fmtValue(v, digits) {
    digits = digits || 4;
    if (!isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a === 0) return "0";
    for (const [d, s] of SI) if (a >= d) return +(v / d).toPrecision(digits) + s;
    if (a < 0.01) for (const [d, s] of SI_SMALL) if (a >= d) return +(v / d).toPrecision(digits) + s;
    if (a < 1e-9) return v.toExponential(2);
    return String(+v.toPrecision(digits));
  }
  const pad = (x) => String(x).padStart(2, "0");
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function fmtDateTime(t) {
    const d = new Date(t * 1000);
    const ms = d.getMilliseconds();
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
      (ms ? "." + String(ms).padStart(3, "0") : "");
  }
  /** 2419 -> "40m19s", 3600 -> "1h", 1.5 -> "1.5s". */
  function fmtDuration(s) {
    if (!(s >= 1) || s % 1) return +s.toFixed(3) + "s";
    let out = "";
    for (const [d, u] of [[604800, "w"], [86400, "d"], [3600, "h"], [60, "m"], [1, "s"]]) {
      if (s >= d) { out += Math.floor(s / d) + u; s %= d; }
    }
    return out;
  }
  /** Seconds in "15", "15s", "1m", "1h30m", "500ms"; NaN when not a duration. */
  function parseDuration(text) {
    text = text.trim();
    if (/^\d+(\.\d+)?$/.test(text)) return parseFloat(text);
    const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
    let total = 0, rest = text;
    const re = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/;
    if (!rest) return NaN;
    while (rest) {
      const m = re.exec(rest);
      if (!m) return NaN;
      total += parseFloat(m[1]) * units[m[2]];
      rest = rest.slice(m[0].length);
    }
    return total;
  }
  const autoStep = (range) => Math.max(1, Math.round(range / 250));

  // ---- UI helpers ----------------------------------------------------------------------------

  function showBox(el, text) { el.textContent = text || ""; el.hidden = !text; }
  function el(tag, attrs, text, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function autoGrow() {
    const ta = $("expr");
    ta.style.height = "auto";
    ta.style.height = Math.min(ta.scrollHeight + 2, 300) + "px";
  }
  function updateStepPlaceholder() {
    $("step").placeholder = "auto: " + fmtDuration(autoStep(RANGES[$("range").value]));
  }

  // ---- API -----------------------------------------------------------------------------------

  class ApiError extends Error {}

  async function api(path, params, signal) {
    const ds = encodeURIComponent($("dataset").value.trim() || "prometheus");
    const url = `/promql/${ds}/api/v1/${path}?` + new URLSearchParams(params);
    const resp = await fetch(url, { signal, headers: { Accept: "application/json" } });
    const text = await resp.text();
    let body;
    try { body = JSON.parse(text); } catch (e) {
      throw new ApiError(`HTTP ${resp.status} ${resp.statusText}: ${text.slice(0, 300) || "empty response"}`);
    }
    if (!body || body.status !== "success") {
      const kind = (body && body.errorType) || "error";
      const msg = (body && body.error) || `HTTP ${resp.status}`;
      const err = new ApiError(`${kind}: ${msg}`);
      err.warnings = body && body.warnings;
      throw err;
    }
    return body;
  }

  // ---- running a query -----------------------------------------------------------------------

  function currentState() {
    const st = { q: $("expr").value.trim(), mode, ds: $("dataset").value.trim() || "prometheus" };
    if (mode === "graph") {
      st.range = $("range").value;
      if ($("step").value.trim()) st.step = $("step").value.trim();
    }
    return st;
  }
  function saveHash() {
    const frag = "#" + new URLSearchParams(currentState()).toString();
    if (location.hash !== frag) history.pushState(null, "", frag);
  }
  function loadHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.get("ds")) $("dataset").value = h.get("ds");
    if (h.get("range") && RANGES[h.get("range")]) $("range").value = h.get("range");
    $("step").value = h.get("step") || "";
    $("expr").value = h.get("q") || "";
    setMode(h.get("mode") === "graph" ? "graph" : "table");
    updateStepPlaceholder();
    autoGrow();
    return !!h.get("q");
  }

  async function run() {
    const expr = $("expr").value.trim();
    showBox($("error")); showBox($("warnings"));
    $("stats").textContent = "";
    if (!expr) return;
    saveHash();
    remember(expr);
    const my = ++seq;
    if (inflight) inflight.abort();
    const ctrl = window.AbortController ? new AbortController() : null;
    inflight = ctrl;
    document.body.classList.add("loading");
    $("run").disabled = true;
    const t0 = performance.now();
    const now = Date.now() / 1000;
    try {
      let body;
      if (mode === "table") {
        body = await api("query", { query: expr, time: now.toFixed(3) }, ctrl && ctrl.signal);
        if (my !== seq) return;
        renderTable(body.data, now);
      } else {
        const range = RANGES[$("range").value];
        const stepText = $("step").value.trim();
        let step = autoStep(range);
        if (stepText) {
          step = parseDuration(stepText);
          if (!(step > 0)) throw new ApiError(`invalid step "${stepText}": use seconds or a duration such as 30s, 5m`);
        }
        const end = Math.round(now), start = end - range; // whole seconds: tidy timestamps
        body = await api("query_range", { query: expr, start: String(start), end: String(end), step: String(step) }, ctrl && ctrl.signal);
        if (my !== seq) return;
        setGraphData(body.data, start, end, step);
      }
      const ms = performance.now() - t0;
      const notes = [...(body.warnings || []).map((w) => "Warning: " + w), ...(body.infos || []).map((i) => "Info: " + i)];
      if (notes.length) showBox($("warnings"), notes.join("\n"));
      const d = body.data;
      const n = d.resultType === "scalar" || d.resultType === "string" ? 1 : (d.result || []).length;
      const what = d.resultType === "scalar" || d.resultType === "string" ? d.resultType : `${n} series · ${d.resultType}`;
      $("stats").textContent = `${what} · ${ms < 1000 ? ms.toFixed(0) + " ms" : (ms / 1000).toFixed(2) + " s"}`;
      $("stats").dataset.resultCount = String(n);
    } catch (e) {
      if (my !== seq || (e && e.name === "AbortError")) return;
      showBox($("error"), "Error executing query: " + (e instanceof ApiError ? e.message : "network error: " + e.message));
      if (e.warnings && e.warnings.length) showBox($("warnings"), "Warning: " + e.warnings.join("\nWarning: "));
      clearResults();
    } finally {
      if (my === seq) {
        inflight = null;
        document.body.classList.remove("loading");
        $("run").disabled = false;
      }
    }
  }

  function clearResults() {
    const tbody = $("result-table").tBodies[0];
    tbody.textContent = "";
    const tr = tbody.insertRow(); tr.className = "empty";
    const td = tr.insertCell(); td.colSpan = 2; td.textContent = "No data.";
    setGraphData({ resultType: "matrix", result: [] }, 0, 1, 1);
  }

  // ---- table ---------------------------------------------------------------------------------

  function renderTable(data) {
    const table = $("result-table");
    const tbody = document.createElement("tbody");
    const add = (name, value, cls) => {
      const tr = tbody.insertRow();
      if (cls) tr.className = cls;
      const a = tr.insertCell(); a.className = "series"; a.textContent = name;
      const b = tr.insertCell(); b.className = "value"; b.textContent = value;
      return tr;
    };
    const type = data.resultType;
    if (type === "scalar" || type === "string") {
      add(type, type === "string" ? data.result[1] : data.result[1], "plain");
    } else {
      const res = data.result || [];
      for (let i = 0; i < res.length && i < MAX_TABLE_ROWS; i++) {
        const s = res[i];
        if (s.value) add(seriesName(s.metric), s.value[1]);
        else add(seriesName(s.metric), (s.values || []).map((v) => `${v[1]} @${v[0]}`).join("\n"), "matrix");
      }
      if (res.length > MAX_TABLE_ROWS) add(`… ${res.length - MAX_TABLE_ROWS} more series not shown`, "", "more");
      if (!res.length) {
        const tr = tbody.insertRow(); tr.className = "empty";
        const td = tr.insertCell(); td.colSpan = 2; td.textContent = "Empty query result.";
      }
    }
    table.replaceChild(tbody, table.tBodies[0]);
  }

  // ---- graph ---------------------------------------------------------------------------------

  function setGraphData(data, start, end, step) {
    let res = data.result || [];
    if (data.resultType === "scalar") res = [{ metric: {}, values: [data.result] }];
    else if (data.resultType === "vector") res = res.map((s) => ({ metric: s.metric, values: [s.value] }));
    else if (data.resultType === "string") res = [];
    const series = res.map((s, i) => {
      const vals = s.values || [];
      const ts = new Float64Array(vals.length), vs = new Float64Array(vals.length);
      for (let k = 0; k < vals.length; k++) { ts[k] = +vals[k][0]; vs[k] = parseFloat(vals[k][1]); }
      return { name: seriesName(s.metric), color: colorOf(i), ts, vs };
    });
    graph = { series, start, end, step };
    // Drop hidden names that are not in this result, keep the rest (re-running keeps the choice).
    const names = new Set(series.map((s) => s.name));
    for (const n of Array.from(hidden)) if (!names.has(n)) hidden.delete(n);
    renderLegend();
    drawGraph();
  }

  /** Nice steps for ticks over [lo, hi], about n of them. */
  function niceStep(lo, hi, n) {
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw * 0.999);
  }
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000];
  function timeTicks(start, end, maxTicks) {
    const span = end - start;
    const iv = TIME_STEPS.find((s) => span / s <= maxTicks) || TIME_STEPS[TIME_STEPS.length - 1];
    const out = [];
    if (iv >= 86400) {
      // Local midnights, every iv/86400 days.
      const d = new Date(start * 1000); d.setHours(0, 0, 0, 0);
      let t = d.getTime() / 1000;
      const days = iv / 86400;
      while (t < start) { d.setDate(d.getDate() + 1); t = d.getTime() / 1000; }
      while (t <= end) {
        if (Math.round((t / 86400)) % days === 0 || days === 1) out.push(t);
        d.setDate(d.getDate() + 1); t = d.getTime() / 1000;
      }
    } else {
      const off = -new Date(start * 1000).getTimezoneOffset() * 60; // align to local clock
      for (let t = Math.ceil((start + off) / iv) * iv - off; t <= end; t += iv) out.push(t);
    }
    return { ticks: out, iv };
  }
  function fmtTick(t, iv, span) {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    const date = `${MONTHS[d.getMonth()]} ${d.getDate()}`;
    if (iv >= 86400) return date;
    if (iv < 60) return `${hm}:${pad(d.getSeconds())}`;
    if (span > 86400 && d.getHours() === 0 && d.getMinutes() === 0) return date;
    return hm;
  }

  function drawGraph() {
    const svg = $("graph"), over = $("graph-overlay");
    svg.textContent = ""; over.textContent = "";
    highlighted = null;
    if (!graph) { svg.setAttribute("data-series-count", "0"); return; }
    const { series, start, end, step } = graph;
    const visible = series.filter((s) => !hidden.has(s.name));
    const W = Math.max(300, Math.round(svg.clientWidth || svg.getBoundingClientRect().width || 1000));
    const H = Math.max(200, Math.round(svg.clientHeight || 420));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    over.setAttribute("viewBox", `0 0 ${W} ${H}`);
    over.setAttribute("width", W); over.setAttribute("height", H);

    let lo = Infinity, hi = -Infinity;
    for (const s of visible) for (let k = 0; k < s.vs.length; k++) { const v = s.vs[k]; if (isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
    const empty = lo === Infinity;
    if (empty) { lo = 0; hi = 1; }
    if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    const ystep = niceStep(lo, hi, Math.max(3, Math.floor(H / 60)));
    lo = Math.floor(lo / ystep + 1e-9) * ystep; hi = Math.ceil(hi / ystep - 1e-9) * ystep;
    const yTicks = [];
    for (let v = lo; v <= hi + ystep * 1e-6; v += ystep) yTicks.push(Math.abs(v) < ystep * 1e-9 ? 0 : v);
    const labels = yTicks.map((v) => fmtValue(v, 4));
    const L = Math.max(44, 12 + 7 * Math.max(...labels.map((s) => s.length))), R = 16, T = 12, B = 26;
    const pw = W - L - R, ph = H - T - B;
    const span = end - start || 1;
    const x = (t) => L + ((t - start) / span) * pw;
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * ph;

    const axes = el("g", { class: "axes" }, null, svg);
    yTicks.forEach((v, i) => {
      const yy = y(v).toFixed(1);
      el("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }, null, axes);
      el("text", { x: L - 6, y: +yy + 4, "text-anchor": "end", class: "tick" }, labels[i], axes);
    });
    const tt = timeTicks(start, end, Math.max(2, Math.floor(pw / 90)));
    for (const t of tt.ticks) {
      const xx = x(t).toFixed(1), label = fmtTick(t, tt.iv, end - start);
      el("line", { x1: xx, x2: xx, y1: T, y2: T + ph, class: "grid" }, null, axes);
      const half = label.length * 3.4; // keep labels inside the SVG
      const anchor = +xx + half > W - 2 ? "end" : +xx - half < 2 ? "start" : "middle";
      el("text", { x: anchor === "end" ? W - 2 : xx, y: H - 8, "text-anchor": anchor, class: "tick" }, label, axes);
    }
    el("line", { x1: L, x2: L, y1: T, y2: T + ph, class: "axis" }, null, axes);
    el("line", { x1: L, x2: W - R, y1: T + ph, y2: T + ph, class: "axis" }, null, axes);

    const clip = el("clipPath", { id: "plot-clip" }, null, el("defs", {}, null, svg));
    el("rect", { x: L, y: T - 2, width: pw, height: ph + 4 }, null, clip);
    const lines = el("g", { class: "lines", "clip-path": "url(#plot-clip)" }, null, svg);
    const gap = step * 1.5;
    let chars = 0;
    for (const s of visible) {
      s.d = pathFor(s, x, y, gap, L, pw);
      chars += s.d.length;
      el("path", { d: s.d, class: "line", stroke: s.color }, null, lines);
    }
    // Very many segments: thinner, non-antialiased lines paint several times faster.
    lines.classList.toggle("heavy", chars > 1500000 || visible.length > 150);
    svg.setAttribute("data-series-count", String(visible.length));
    if (empty) {
      el("text", { x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle", class: "nodata" },
        series.length ? "All series hidden" : "No data points", svg);
    }
    // Hover decorations live in a separate overlay SVG (its own layer): moving them does not
    // repaint the lines, which matters with hundreds of series.
    const oclip = el("clipPath", { id: "overlay-clip" }, null, el("defs", {}, null, over));
    el("rect", { x: L, y: T - 2, width: pw, height: ph + 4 }, null, oclip);
    const hl = el("path", { class: "hl", d: "M0,0", visibility: "hidden", "clip-path": "url(#overlay-clip)" }, null, over);
    const cursor = el("line", { class: "cursor", y1: T, y2: T + ph, x1: -10, x2: -10, visibility: "hidden" }, null, over);
    const dot = el("circle", { class: "dot", r: 4, cx: -10, cy: -10, visibility: "hidden" }, null, over);
    graph.geo = { W, H, L, T, pw, ph, lo, hi, x, y, visible, cursor, dot, hl };
  }

  /** The SVG path of one series; a step without a point breaks the line. A series with more
   *  points than pixel columns is reduced to its min and max per column (same picture, small path). */
  function pathFor(s, x, y, gap, L, pw) {
    const ts = s.ts, vs = s.vs, n = ts.length;
    const parts = [];
    const dense = n > pw;
    const fy = (v) => Math.round(y(v) * 2) / 2; // half-pixel precision keeps the path short
    let prevT = -Infinity, pen = false;
    let col = NaN, cCount = 0, cFirst = 0, cMin = 0, cMax = 0, cLast = 0;
    const flush = () => {
      if (isNaN(col)) return;
      if (cCount > 1 && Math.abs(y(cMin) - y(cMax)) >= 1) {
        const a = cFirst <= cLast ? cMin : cMax, b = cFirst <= cLast ? cMax : cMin;
        if (a !== cFirst) parts.push("L" + col + "," + fy(a));
        parts.push("L" + col + "," + fy(b));
      }
      col = NaN;
    };
    for (let k = 0; k < n; k++) {
      const t = ts[k], v = vs[k];
      if (!isFinite(v)) { flush(); pen = false; prevT = t; continue; }
      const broken = !pen || t - prevT > gap;
      prevT = t;
      const px = dense ? Math.round(x(t)) : Math.round(x(t) * 10) / 10;
      if (dense && !broken && px === col) {
        cCount++; cLast = v;
        if (v < cMin) cMin = v;
        if (v > cMax) cMax = v;
        continue;
      }
      flush();
      if (broken) {
        parts.push("M" + px + "," + fy(v));
        pen = true;
        // A lone point would be invisible: give it a tiny horizontal stroke.
        if (!(k + 1 < n && ts[k + 1] - t <= gap && isFinite(vs[k + 1]))) parts.push("h1.5");
      } else {
        parts.push("L" + px + "," + fy(v));
      }
      if (dense) { col = px; cCount = 1; cFirst = cMin = cMax = cLast = v; }
    }
    flush();
    return parts.join("") || "M0,0";
  }

  function lowerBound(ts, t) {
    let a = 0, b = ts.length;
    while (a < b) { const m = (a + b) >> 1; if (ts[m] < t) a = m + 1; else b = m; }
    return a;
  }

  let hoverEv = null, hoverPending = false;
  function onHover(ev) {
    hoverEv = ev;
    if (hoverPending) return;
    hoverPending = true;
    requestAnimationFrame(() => { hoverPending = false; hover(hoverEv); });
  }
  function hideHover() {
    $("tooltip").hidden = true;
    if (graph && graph.geo) {
      graph.geo.cursor.setAttribute("visibility", "hidden");
      graph.geo.dot.setAttribute("visibility", "hidden");
    }
    highlight(null);
  }
  let highlighted = null;
  /** Draws series s (or nothing) bold on the overlay. */
  function highlight(s) {
    if (highlighted === s || !graph || !graph.geo) return;
    highlighted = s;
    const hl = graph.geo.hl;
    if (!s || !s.d || hidden.has(s.name)) { hl.setAttribute("visibility", "hidden"); return; }
    hl.setAttribute("d", s.d);
    hl.setAttribute("stroke", s.color);
    hl.setAttribute("visibility", "visible");
  }
  function hover(ev) {
    if (!ev || !graph || !graph.geo) return;
    const g = graph.geo, svg = $("graph");
    const r = svg.getBoundingClientRect();
    const mx = (ev.clientX - r.left) * (g.W / r.width), my = (ev.clientY - r.top) * (g.H / r.height);
    if (mx < g.L || mx > g.L + g.pw || my < g.T - 4 || my > g.T + g.ph + 4 || !g.visible.length) { hideHover(); return; }
    const t = graph.start + ((mx - g.L) / g.pw) * (graph.end - graph.start);
    // Nearest point in time per series (binary search), then the one closest to the pointer.
    let best = null;
    for (const s of g.visible) {
      const ts = s.ts;
      if (!ts.length) continue;
      let k = lowerBound(ts, t);
      if (k > 0 && (k === ts.length || t - ts[k - 1] < ts[k] - t)) k -= 1;
      const v = s.vs[k];
      if (!isFinite(v)) continue;
      const dx = Math.abs(g.x(ts[k]) - mx), dy = Math.abs(g.y(v) - my);
      const score = dx * 4 + dy;
      if (dx > 40) continue;
      if (!best || score < best.score) best = { score, s, t: ts[k], v };
    }
    if (!best) { hideHover(); return; }
    const px = g.x(best.t), py = g.y(best.v);
    g.cursor.setAttribute("x1", px); g.cursor.setAttribute("x2", px); g.cursor.setAttribute("visibility", "visible");
    g.dot.setAttribute("cx", px); g.dot.setAttribute("cy", py); g.dot.setAttribute("fill", best.s.color); g.dot.setAttribute("visibility", "visible");
    highlight(best.s);
    const tip = $("tooltip");
    tip.textContent = "";
    const head = document.createElement("div"); head.className = "tip-time"; head.textContent = fmtDateTime(best.t);
    const row = document.createElement("div"); row.className = "tip-series";
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = best.s.color;
    row.append(sw, document.createTextNode(best.s.name));
    const val = document.createElement("div"); val.className = "tip-value";
    val.textContent = "value: " + String(best.v) + (Math.abs(best.v) >= 1000 ? `  (${fmtValue(best.v, 5)})` : "");
    tip.append(head, row, val);
    tip.hidden = false;
    const wrap = tip.parentElement.getBoundingClientRect();
    let left = ev.clientX - wrap.left + 14, top = ev.clientY - wrap.top + 14;
    if (left + tip.offsetWidth > wrap.width) left = Math.max(0, ev.clientX - wrap.left - tip.offsetWidth - 14);
    if (top + tip.offsetHeight > wrap.height) top = Math.max(0, ev.clientY - wrap.top - tip.offsetHeight - 14);
    tip.style.left = left + "px"; tip.style.top = top + "px";
  }

  function renderLegend() {
    const legend = $("legend");
    const frag = document.createDocumentFragment();
    const series = graph ? graph.series : [];
    series.forEach((s, i) => {
      const li = document.createElement("li");
      li.dataset.index = String(i);
      if (hidden.has(s.name)) li.className = "off";
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = s.color;
      const nm = document.createElement("span"); nm.className = "name"; nm.textContent = s.name;
      li.append(sw, nm);
      li.title = s.name;
      frag.append(li);
    });
    legend.textContent = "";
    legend.append(frag);
    const nHidden = series.filter((s) => hidden.has(s.name)).length;
    $("legend-count").textContent = series.length ? `${series.length} series${nHidden ? `, ${nHidden} hidden` : ""}` : "";
    $("legend-all").hidden = $("legend-none").hidden = series.length < 2;
  }
  function onLegendClick(ev) {
    const li = ev.target.closest("li[data-index]");
    if (!li || !graph) return;
    const s = graph.series[+li.dataset.index];
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) {
      const only = graph.series.every((o) => o === s || hidden.has(o.name)) && !hidden.has(s.name);
      hidden.clear();
      if (!only) for (const o of graph.series) if (o !== s) hidden.add(o.name);
    } else if (hidden.has(s.name)) hidden.delete(s.name);
    else hidden.add(s.name);
    renderLegend();
    drawGraph();
  }
  function onLegendHover(ev) {
    const li = ev.target.closest("li[data-index]");
    if (!li || !graph) { highlight(null); return; }
    const s = graph.series[+li.dataset.index];
    highlight(s);
  }

  // ---- history -------------------------------------------------------------------------------

  function loadHistory() {
    try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; }
  }
  function remember(expr) {
    try {
      const h = loadHistory().filter((q) => q !== expr);
      h.unshift(expr);
      localStorage.setItem(HISTORY_KEY, JSON.stringify(h.slice(0, 25)));
    } catch (e) { /* storage may be disabled */ }
  }
  function toggleHistory(open) {
    const menu = $("history");
    open = open === undefined ? menu.hidden : open;
    $("history-btn").setAttribute("aria-expanded", String(open));
    if (!open) { menu.hidden = true; return; }
    menu.textContent = "";
    const h = loadHistory();
    if (!h.length) {
      const li = document.createElement("li"); li.className = "empty"; li.textContent = "No queries yet"; menu.append(li);
    }
    for (const q of h) {
      const li = document.createElement("li"); li.textContent = q; li.title = q;
      li.onclick = () => { $("expr").value = q; autoGrow(); toggleHistory(false); run(); };
      menu.append(li);
    }
    if (h.length) {
      const li = document.createElement("li"); li.className = "clear"; li.textContent = "Clear history";
      li.onclick = () => { try { localStorage.removeItem(HISTORY_KEY); } catch (e) { /* ignore */ } toggleHistory(false); };
      menu.append(li);
    }
    menu.hidden = false;
  }

  // ---- wiring --------------------------------------------------------------------------------

  function setMode(m) {
    mode = m;
    $("tab-table").classList.toggle("active", m === "table");
    $("tab-graph").classList.toggle("active", m === "graph");
    $("tab-table").setAttribute("aria-selected", String(m === "table"));
    $("tab-graph").setAttribute("aria-selected", String(m === "graph"));
    $("table-view").hidden = m !== "table";
    $("graph-view").hidden = m !== "graph";
    $("range-controls").hidden = m !== "graph";
  }

  $("run").addEventListener("click", run);
  $("tab-table").addEventListener("click", () => { if (mode !== "table") { setMode("table"); run(); } });
  $("tab-graph").addEventListener("click", () => { if (mode !== "graph") { setMode("graph"); run(); } });
  $("range").addEventListener("change", () => { updateStepPlaceholder(); run(); });
  $("step").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); run(); } });
  $("dataset").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); run(); } });
  $("expr").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); run(); }
  });
  $("expr").addEventListener("input", autoGrow);
  $("history-btn").addEventListener("click", (ev) => { ev.stopPropagation(); toggleHistory(); });
  document.addEventListener("click", (ev) => { if (!ev.target.closest(".history-wrap")) toggleHistory(false); });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") toggleHistory(false); });
  $("legend").addEventListener("click", onLegendClick);
  $("legend").addEventListener("mouseover", onLegendHover);
  $("legend").addEventListener("mouseleave", () => highlight(null));
  $("legend-all").addEventListener("click", () => { hidden.clear(); renderLegend(); drawGraph(); });
  $("legend-none").addEventListener("click", () => { if (graph) for (const s of graph.series) hidden.add(s.name); renderLegend(); drawGraph(); });
  $("graph").addEventListener("mousemove", onHover);
  $("graph").addEventListener("mouseleave", hideHover);
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (mode === "graph" && graph) drawGraph(); }, 150);
  });
  window.addEventListener("popstate", () => { if (loadHash()) run(); });

  fetch("/api/v1/status/buildinfo").then((r) => r.json()).then((b) => {
    if (b && b.data && b.data.version) $("version").textContent = "filodb-py v" + String(b.data.version).replace(/^v/, "");
  }).catch(() => { /* the header just stays empty */ });

  if (loadHash()) run();
  else { updateStepPlaceholder(); $("expr").focus(); }
})();
