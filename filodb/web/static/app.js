// FiloDB query page: PromQL box, table and line graph over the Prometheus HTTP API. No build step.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const RANGES = { "5m": 300, "15m": 900, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "1d": 86400, "2d": 172800, "1w": 604800 };
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  let mode = "table";
  const hidden = new Set();

  function seriesName(m) {
    const name = m.__name__ || "";
    const rest = Object.keys(m).filter((k) => k !== "__name__").sort().map((k) => `${k}="${m[k]}"`).join(", ");
    return rest || !name ? `${name}{${rest}}` : name;
  }
  function show(el, text) { el.textContent = text || ""; el.hidden = !text; }

  async function api(path, params) {
    const ds = encodeURIComponent($("dataset").value.trim() || "prometheus");
    const url = `/promql/${ds}/api/v1/${path}?` + new URLSearchParams(params);
    const resp = await fetch(url);
    let body;
    try { body = await resp.json(); } catch (e) { throw new Error(`HTTP ${resp.status}: not JSON`); }
    if (body.status !== "success") throw new Error(`${body.errorType || "error"}: ${body.error || resp.status}`);
    return body;
  }

  async function run() {
    const expr = $("expr").value.trim();
    show($("error")); show($("warnings")); $("stats").textContent = "";
    if (!expr) return;
    location.hash = new URLSearchParams({ q: expr, mode, range: $("range").value, ds: $("dataset").value }).toString();
    remember(expr);
    const t0 = performance.now();
    try {
      const now = Date.now() / 1000;
      let body;
      if (mode === "table") {
        body = await api("query", { query: expr, time: now.toFixed(3) });
        renderTable(body.data);
      } else {
        const range = RANGES[$("range").value];
        const step = $("step").value.trim() || String(Math.max(1, Math.round(range / 250)));
        body = await api("query_range", { query: expr, start: (now - range).toFixed(3), end: now.toFixed(3), step });
        renderGraph(body.data, now - range, now);
      }
      if (body.warnings && body.warnings.length) show($("warnings"), body.warnings.join("\n"));
      const n = Array.isArray(body.data.result) && body.data.resultType !== "scalar" && body.data.resultType !== "string" ? body.data.result.length : 1;
      $("stats").textContent = `${n} result${n === 1 ? "" : "s"} · ${(performance.now() - t0).toFixed(0)} ms`;
    } catch (e) {
      show($("error"), e.message);
      renderTable({ resultType: "vector", result: [] });
      renderGraph({ resultType: "matrix", result: [] }, 0, 1);
    }
  }

  function renderTable(data) {
    const tbody = $("result-table").querySelector("tbody");
    tbody.textContent = "";
    const add = (name, value) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.className = "series"; a.textContent = name;
      const b = document.createElement("td"); b.className = "value"; b.textContent = value;
      tr.append(a, b); tbody.append(tr);
    };
    if (data.resultType === "scalar" || data.resultType === "string") { add("scalar", data.result[1]); return; }
    for (const s of data.result) {
      if (s.value) add(seriesName(s.metric), s.value[1]);
      else add(seriesName(s.metric), s.values.map((v) => `${v[1]} @${v[0]}`).join("\n"));
    }
    if (!data.result.length) add("no data", "");
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(v);
    return out;
  }
  function fmtValue(v) {
    const a = Math.abs(v);
    for (const [d, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (a >= d) return +(v / d).toPrecision(3) + s;
    return +v.toPrecision(4) + "";
  }
  function fmtTime(t, span) {
    const d = new Date(t * 1000), p = (x) => String(x).padStart(2, "0");
    const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
    return span > 2 * 86400 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
  }

  function renderGraph(data, start, end) {
    const svg = $("graph"), legend = $("legend"), NS = "http://www.w3.org/2000/svg";
    svg.textContent = ""; legend.textContent = "";
    let series = data.resultType === "scalar" ? [{ metric: {}, values: [data.result] }] : (data.result || []);
    series = series.map((s, i) => ({ name: seriesName(s.metric), color: COLORS[i % COLORS.length],
      pts: (s.values || [s.value]).map((v) => [v[0], parseFloat(v[1])]) }));
    svg.setAttribute("data-series-count", String(series.length));
    const W = svg.clientWidth || 1000, H = svg.clientHeight || 420, L = 60, R = 12, T = 10, B = 24;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    let lo = Infinity, hi = -Infinity;
    for (const s of series) if (!hidden.has(s.name)) for (const [, v] of s.pts) if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === Infinity) { lo = 0; hi = 1; }
    if (lo === hi) { lo -= 1; hi += 1; }
    const x = (t) => L + ((t - start) / (end - start || 1)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const el = (tag, attrs, text) => { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; svg.append(e); return e; };
    for (const v of niceTicks(lo, hi, 5)) { el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }); el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtValue(v)); }
    for (const t of niceTicks(start, end, 6)) { el("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, fmtTime(t, end - start)); }
    el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" });
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" });
    const stepGuess = (s) => { let m = Infinity; for (let i = 1; i < s.pts.length; i++) m = Math.min(m, s.pts[i][0] - s.pts[i - 1][0]); return m; };
    for (const s of series) {
      if (hidden.has(s.name)) continue;
      const gap = stepGuess(s) * 1.5;
      let d = "", prev = null;
      for (const [t, v] of s.pts) {
        if (!isFinite(v)) { prev = null; continue; }
        d += (prev === null || t - prev > gap ? "M" : "L") + x(t).toFixed(1) + "," + y(v).toFixed(1);
        prev = t;
      }
      el("path", { d, class: "line", stroke: s.color });
    }
    for (const s of series) {
      const li = document.createElement("li");
      if (hidden.has(s.name)) li.className = "off";
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = s.color;
      li.append(sw, document.createTextNode(s.name));
      li.onclick = () => { hidden.has(s.name) ? hidden.delete(s.name) : hidden.add(s.name); renderGraph(data, start, end); };
      legend.append(li);
    }
    svg.onmousemove = (ev) => {
      const r = svg.getBoundingClientRect(), t = start + ((ev.clientX - r.left) * (W / r.width) - L) / (W - L - R) * (end - start);
      let best = null;
      for (const s of series) { if (hidden.has(s.name)) continue; for (const p of s.pts) { const dt = Math.abs(p[0] - t); if (!best || dt < best.dt || (dt === best.dt && Math.abs(y(p[1]) - (ev.clientY - r.top) * (H / r.height)) < best.dy)) best = { dt, s, p, dy: Math.abs(y(p[1]) - (ev.clientY - r.top) * (H / r.height)) }; } }
      const tip = $("tooltip");
      if (!best) { tip.hidden = true; return; }
      tip.hidden = false; tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + 12 + "px";
      tip.textContent = `${new Date(best.p[0] * 1000).toISOString()}\n${best.s.name}\n${best.p[1]}`;
    };
    svg.onmouseleave = () => { $("tooltip").hidden = true; };
  }

  function remember(expr) {
    try {
      const h = JSON.parse(localStorage.getItem("filodb.history") || "[]").filter((q) => q !== expr);
      h.unshift(expr); localStorage.setItem("filodb.history", JSON.stringify(h.slice(0, 25)));
    } catch (e) { /* storage may be disabled */ }
  }

  function setMode(m) {
    mode = m;
    $("tab-table").classList.toggle("active", m === "table");
    $("tab-graph").classList.toggle("active", m === "graph");
    $("table-view").hidden = m !== "table";
    $("graph-view").hidden = m !== "graph";
  }

  $("run").onclick = run;
  $("tab-table").onclick = () => { setMode("table"); run(); };
  $("tab-graph").onclick = () => { setMode("graph"); run(); };
  $("range").onchange = run;
  $("expr").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); run(); } });
  fetch("/api/v1/status/buildinfo").then((r) => r.json()).then((b) => { $("version").textContent = "filodb-py " + b.data.version; }).catch(() => {});
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("ds")) $("dataset").value = h.get("ds");
  if (h.get("range") && RANGES[h.get("range")]) $("range").value = h.get("range");
  setMode(h.get("mode") === "graph" ? "graph" : "table");
  if (h.get("q")) { $("expr").value = h.get("q"); run(); }
})();
