// FiloDB cluster page: nodes and per-dataset shard tables. Polls every 2 s and, when the
// server-sent event stream /api/v1/cluster/events works, also refreshes on every shard event.
// Requests go through auth.js's fetch, which adds the session's token when the server wants one.
// ?live=0 keeps to polling (no long-lived event stream), e.g. for headless screenshots.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000;
  const STATUSES = ["Active", "Recovery", "Assigned", "Unassigned", "Stopped", "Error", "Down"];

  async function get(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    let b;
    try { b = await r.json(); } catch (e) { throw new Error(`${url}: HTTP ${r.status}, not JSON`); }
    if (!b || b.status !== "success") throw new Error(`${url}: ${(b && b.error) || "HTTP " + r.status}`);
    return b.data;
  }
  function td(tr, text, cls) {
    const c = tr.insertCell();
    if (text !== undefined && text !== null) c.textContent = text;
    if (cls) c.className = cls;
    return c;
  }
  function pill(status, text) {
    const s = document.createElement("span");
    s.className = "pill status-" + String(status).replace(/[^A-Za-z0-9_-]/g, "");
    s.textContent = text || status;
    return s;
  }
  const num = (v) => (v === undefined || v === null ? "–" : Number(v).toLocaleString("en-US"));
  function ago(sec) {
    if (sec < 0) sec = 0;
    if (sec < 60) return sec.toFixed(1) + "s ago";
    if (sec < 3600) return Math.floor(sec / 60) + "m " + Math.floor(sec % 60) + "s ago";
    if (sec < 86400) return Math.floor(sec / 3600) + "h " + Math.floor((sec % 3600) / 60) + "m ago";
    return Math.floor(sec / 86400) + "d ago";
  }
  function card(value, label, sub) {
    const c = document.createElement("div"); c.className = "card";
    const n = document.createElement("div"); n.className = "num"; n.textContent = value;
    if (sub) { const s = document.createElement("small"); s.textContent = " " + sub; n.append(s); }
    const l = document.createElement("div"); l.className = "label"; l.textContent = label;
    c.append(n, l);
    return c;
  }

  function renderNodes(nodes) {
    const now = Date.now() / 1000;
    const tb = document.createElement("tbody");
    for (const n of nodes) {
      const tr = tb.insertRow();
      td(tr, n.name, "mono");
      const alive = n.alive !== undefined ? !!n.alive : n.last_heartbeat != null && now - n.last_heartbeat < 30;
      td(tr).append(pill(alive ? "alive" : "dead", alive ? "alive" : "dead"));
      td(tr, n.host || "–", "mono");
      td(tr, n.pid != null ? String(n.pid) : "–", "num");
      const owned = Object.entries(n.shards || {}).map(([d, s]) => `${d}: ${[...s].sort((a, b) => a - b).join(", ")}`);
      td(tr, owned.join("  ·  ") || "–", "mono");
      td(tr, n.last_heartbeat ? `${new Date(n.last_heartbeat * 1000).toLocaleTimeString()} (${ago(now - n.last_heartbeat)})` : "never / expired",
        alive ? "hb" : "hb muted");
    }
    if (!nodes.length) { const tr = tb.insertRow(); td(tr, "No nodes registered.", "muted").colSpan = 6; }
    const table = $("nodes");
    table.replaceChild(tb, table.tBodies[0]);
    const live = nodes.filter((n) => n.alive !== false).length;
    $("nodes-count").textContent = `${live} of ${nodes.length} alive`;
  }

  function renderDataset(d, rows, err) {
    const sec = document.createElement("section");
    sec.className = "panel dataset";
    sec.dataset.dataset = d.dataset;
    const head = document.createElement("div"); head.className = "section-head";
    const h = document.createElement("h2"); h.textContent = d.dataset;
    const meta = document.createElement("span"); meta.className = "muted";
    meta.textContent = [`${d.shards} shards`, d.spread !== undefined ? `spread ${d.spread}` : null].filter(Boolean).join(" · ");
    head.append(h, meta);
    sec.append(head);
    if (err) {
      const e = document.createElement("div"); e.className = "errmsg"; e.textContent = "cannot load shard status: " + err.message;
      sec.append(e);
      return sec;
    }
    const map = document.createElement("div"); map.className = "shard-map";
    for (const r of rows) {
      const sq = document.createElement("span");
      sq.className = "status-" + r.status;
      sq.title = `shard ${r.shard}: ${r.status}${r.node ? " on " + r.node : ""}`;
      map.append(sq);
    }
    head.append(map);
    const hasSamples = rows.some((r) => r.samples !== undefined);
    const t = document.createElement("table");
    t.className = "grid shards";
    t.dataset.dataset = d.dataset;
    const cols = ["Shard", "Node", "Status", "Ingested offset", "Log end offset", "Lag", "Series"];
    if (hasSamples) cols.push("Samples");
    cols.push("Updated");
    const thr = t.createTHead().insertRow();
    cols.forEach((c, i) => {
      const th = document.createElement("th"); th.textContent = c;
      if (i === 0 || (i >= 3 && c !== "Updated")) th.className = "num";
      thr.append(th);
    });
    const tb = t.createTBody();
    const now = Date.now() / 1000;
    for (const r of rows) {
      const tr = tb.insertRow();
      td(tr, String(r.shard), "num");
      td(tr, r.node || "–", "mono");
      const st = td(tr, null, "status status-" + r.status);
      st.append(pill(r.status));
      if (r.status === "Recovery" && r.progress !== undefined && r.progress !== null) {
        const p = Math.max(0, Math.min(100, Number(r.progress)));
        const bar = document.createElement("span"); bar.className = "progress"; bar.title = p + "%";
        const fill = document.createElement("i"); fill.style.width = p + "%"; bar.append(fill);
        const txt = document.createElement("span"); txt.className = "progress-text"; txt.textContent = p + "%";
        st.append(bar, txt);
      }
      td(tr, num(r.ingested_offset), "num");
      td(tr, num(r.log_end_offset), "num");
      td(tr, num(r.lag), "num" + (r.lag > 1000 ? " lag-high" : ""));
      td(tr, num(r.series), "num");
      if (hasSamples) td(tr, num(r.samples), "num");
      td(tr, r.updated ? ago(now - r.updated) : "–", "muted");
    }
    if (!rows.length) { const tr = tb.insertRow(); td(tr, "No shards.", "muted").colSpan = cols.length; }
    sec.append(t);
    return sec;
  }

  function renderSummary(nodes, datasets, statusRows) {
    const box = $("summary");
    box.textContent = "";
    const alive = nodes.filter((n) => n.alive !== false).length;
    box.append(card(String(alive), "nodes alive", `/ ${nodes.length}`));
    box.append(card(String(datasets.length), datasets.length === 1 ? "dataset" : "datasets"));
    const counts = {};
    let total = 0;
    for (const rows of statusRows) for (const r of rows || []) { counts[r.status] = (counts[r.status] || 0) + 1; total++; }
    box.append(card(String(counts.Active || 0), "shards active", `/ ${total}`));
    const other = STATUSES.filter((s) => s !== "Active" && counts[s]).map((s) => `${counts[s]} ${s}`);
    for (const s of Object.keys(counts)) if (!STATUSES.includes(s)) other.push(`${counts[s]} ${s}`);
    if (other.length) {
      const c = card(String(total - (counts.Active || 0)), "shards not active: " + other.join(", "));
      c.classList.add("attention");
      box.append(c);
    }
  }

  let running = false, again = false;
  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      const [nodes, datasets] = await Promise.all([get("/admin/nodes"), get("/api/v1/cluster")]);
      const statuses = await Promise.all(datasets.map((d) =>
        get(`/api/v1/cluster/${encodeURIComponent(d.dataset)}/status`).then((rows) => ({ rows }), (err) => ({ err }))));
      renderNodes(nodes);
      const frag = document.createDocumentFragment();
      datasets.forEach((d, i) => frag.append(renderDataset(d, statuses[i].rows || [], statuses[i].err)));
      if (!datasets.length) {
        const p = document.createElement("p"); p.className = "muted"; p.textContent = "No datasets yet."; frag.append(p);
      }
      const box = $("datasets");
      box.textContent = "";
      box.append(frag);
      renderSummary(nodes, datasets, statuses.map((s) => s.rows));
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      $("error").hidden = true;
    } catch (e) {
      $("error").textContent = "Cannot load cluster state: " + e.message + " (retrying every 2 s)";
      $("error").hidden = false;
    } finally {
      running = false;
      if (again) { again = false; refresh(); }
    }
  }

  // Shard events come in bursts (a node joining moves many shards): coalesce them.
  let eventTimer = 0;
  function onEvent() {
    clearTimeout(eventTimer);
    eventTimer = setTimeout(refresh, 100);
  }
  function setLive(on, text) {
    const el = $("live");
    el.classList.toggle("on", on);
    el.textContent = text;
    el.title = on ? "live shard events + polling every 2 s" : "polling every 2 s";
  }

  // The live line for one event: the stream opens with one ShardMapSnapshot per dataset (the
  // whole map, no single shard), then ShardMapSnapshotEnd, then one event per shard change.
  function describe(e) {
    if (e.event === "ShardMapSnapshot") {
      const states = e.shards_state || [];
      const active = states.filter((s) => s.status === "Active").length;
      return `live · snapshot ${e.dataset}: ${active} of ${states.length} shards Active`;
    }
    if (e.event === "ShardMapSnapshotEnd") return "live · snapshot received";
    if (e.shard === undefined || e.dataset === undefined) return `live · ${e.event || "event"}`;
    return `live · shard ${e.dataset}/${e.shard} → ${e.status || e.event || "?"}`;
  }

  refresh();
  setInterval(refresh, POLL_MS);
  // The event stream is read with fetch (not EventSource, which cannot send the token of
  // auth.js): "data: <json>" lines, the stream reopened when the server ends it (every 30 s).
  async function follow() {
    let failures = 0;
    while (failures < 5) { // a stream that keeps failing (a proxy that buffers) is given up
      try {
        const r = await fetch("/api/v1/cluster/events", { headers: { Accept: "text/event-stream" }, cache: "no-store" });
        if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
        failures = 0;
        setLive(true, "live");
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let nl;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line.startsWith("data: ")) continue;
            try {
              setLive(true, describe(JSON.parse(line.slice(6))));
            } catch (err) { /* not JSON: still a reason to refresh */ }
            onEvent();
          }
        }
      } catch (e) {
        failures++;
        setLive(false, "polling");
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }
  if (window.ReadableStream && new URLSearchParams(location.search).get("live") !== "0") follow();
})();
