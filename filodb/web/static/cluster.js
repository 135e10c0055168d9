// FiloDB cluster page: nodes and per-dataset shard tables; polls every 2 s and refreshes on
// every shard event from /api/v1/cluster/events (server-sent events) when that stream works.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const get = async (url) => { const r = await fetch(url); const b = await r.json(); if (b.status !== "success") throw new Error(b.error || r.status); return b.data; };
  const cell = (tr, text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.append(td); return td; };

  async function refresh() {
    try {
      const [nodes, datasets] = await Promise.all([get("/admin/nodes"), get("/api/v1/cluster")]);
      const tb = $("nodes").querySelector("tbody"); tb.textContent = "";
      for (const n of nodes) {
        const tr = document.createElement("tr");
        cell(tr, n.name); cell(tr, n.host); cell(tr, String(n.pid));
        cell(tr, Object.entries(n.shards || {}).map(([d, s]) => `${d}: ${s.join(",")}`).join("; ") || "-");
        cell(tr, n.last_heartbeat ? new Date(n.last_heartbeat * 1000).toLocaleTimeString() : "dead", n.alive ? "" : "status-Down");
        tb.append(tr);
      }
      const box = $("datasets"); box.textContent = "";
      for (const d of datasets) {
        const rows = await get(`/api/v1/cluster/${encodeURIComponent(d.dataset)}/status`);
        const h = document.createElement("h2"); h.textContent = `Dataset ${d.dataset} · ${d.shards} shards · spread ${d.spread}`;
        const t = document.createElement("table"); t.className = "shards"; t.dataset.dataset = d.dataset;
        t.innerHTML = "<thead><tr><th>Shard</th><th>Node</th><th>Status</th><th>Ingested</th><th>Log end</th><th>Lag</th><th>Series</th><th>Samples</th></tr></thead>";
        const body = document.createElement("tbody");
        for (const r of rows) {
          const tr = document.createElement("tr");
          cell(tr, String(r.shard)); cell(tr, r.node || "-");
          cell(tr, r.status + (r.status === "Recovery" ? ` ${r.progress}%` : ""), "status-" + r.status);
          cell(tr, String(r.ingested_offset)); cell(tr, String(r.log_end_offset)); cell(tr, String(r.lag));
          cell(tr, String(r.series)); cell(tr, String(r.samples));
          body.append(tr);
        }
        t.append(body); box.append(h, t);
      }
      $("error").hidden = true;
    } catch (e) {
      $("error").textContent = "cannot load cluster state: " + e.message; $("error").hidden = false;
    }
  }

  refresh();
  setInterval(refresh, 2000);
  // ?live=0 keeps to polling (no long-lived event stream), e.g. for headless screenshots.
  if (window.EventSource && new URLSearchParams(location.search).get("live") !== "0") {
    const es = new EventSource("/api/v1/cluster/events");
    es.onopen = () => { $("live").textContent = "live"; };
    es.onmessage = () => refresh();
    es.onerror = () => { $("live").textContent = "polling"; };
  }
})();
