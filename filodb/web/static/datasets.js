// Dataset page: every dataset with its settings and shard totals (from /api/v1/cluster and the
// status route), the metric names of the selected one (each opens the query page), and a form
// that creates a dataset through the admin API, showing the server's message on an error.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const fmtDuration = (s) => {
    if (s === undefined || s === null) return "default";
    if (s === 0) return "forever";
    for (const [u, n] of [["d", 86400], ["h", 3600], ["m", 60]]) if (s % n === 0) return s / n + u;
    return s + "s";
  };
  let selected = new URLSearchParams(location.search).get("name") || "";

  async function getJSON(url, opts) {
    const r = await fetch(url, opts);
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok || !body || body.status !== "success") {
      throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    }
    return body.data;
  }

  async function refresh() {
    try {
      const datasets = await getJSON("/api/v1/cluster");
      const statuses = await Promise.all(datasets.map((d) =>
        getJSON(`/api/v1/cluster/${encodeURIComponent(d.dataset)}/status`).catch(() => [])));
      const tbody = $("datasets").tBodies[0];
      tbody.replaceChildren();
      datasets.forEach((d, i) => {
        const rows = statuses[i];
        const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
        const active = rows.filter((r) => r.status === "Active").length;
        const tr = el("tr");
        tr.dataset.dataset = d.dataset;
        const name = el("td");
        const a = el("a", d.dataset);
        a.href = `/datasets?name=${encodeURIComponent(d.dataset)}`;
        a.addEventListener("click", (ev) => { ev.preventDefault(); select(d.dataset); });
        name.append(a);
        const ovr = (d.spread_overrides || []).map((o) => `${o._ws_}/${o._ns_}: ${o.spread}`).join(", ");
        tr.append(name, el("td", d.shards, "num"), el("td", d.spread, "num"),
          el("td", fmtDuration(d.retention_s)), el("td", ovr || "—"),
          el("td", Object.entries(d.limits || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "defaults"),
          el("td", `${active}/${d.shards}`, "num active-count"), el("td", sum("series"), "num"),
          el("td", sum("samples"), "num"), el("td", sum("lag"), "num"));
        tbody.append(tr);
      });
      $("ds-count").textContent = `${datasets.length} dataset${datasets.length === 1 ? "" : "s"}`;
      if (!selected && datasets.length) select(datasets[0].dataset);
      $("error").hidden = true;
    } catch (e) {
      $("error").textContent = "Cannot load datasets: " + e.message;
      $("error").hidden = false;
    }
  }

  async function select(name) {
    selected = name;
    history.replaceState(null, "", `/datasets?name=${encodeURIComponent(name)}`);
    $("metrics-ds").textContent = name;
    const box = $("metrics");
    try {
      const names = await getJSON(`/promql/${encodeURIComponent(name)}/api/v1/label/__name__/values`);
      box.replaceChildren();
      if (!names.length) box.append(el("span", "no metrics yet", "muted"));
      for (const m of names) {
        const a = el("a", m, "metric");
        a.href = "/#" + new URLSearchParams({ q: m, ds: name, mode: "graph" }).toString();
        box.append(a);
      }
    } catch (e) {
      box.replaceChildren(el("span", "cannot list metrics: " + e.message, "muted"));
    }
  }

  $("create").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("c-name").value.trim();
    const body = { shards: Number($("c-shards").value), spread: Number($("c-spread").value) };
    if ($("c-retention").value.trim()) body.retention = $("c-retention").value.trim();
    const headers = { "Content-Type": "application/json" };
    if ($("c-token").value) headers.Authorization = "Bearer " + $("c-token").value;
    const out = $("c-result");
    out.className = "muted";
    out.textContent = "";  // never leave the last answer showing while this one is on its way
    try {
      const d = await getJSON(`/api/v1/cluster/${encodeURIComponent(name)}`,
        { method: "POST", headers, body: JSON.stringify(body) });
      out.className = "ok";
      out.textContent = `created ${d.dataset}: ${d.shards} shards`;
      await refresh();
    } catch (e) {
      out.className = "error-text";
      out.textContent = e.message;
    }
  });

  refresh().then(() => { if (selected) select(selected); });
  setInterval(refresh, 5000);
})();
