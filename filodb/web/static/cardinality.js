// Cardinality page: /promql/<dataset>/api/v1/status/tsdb as tables (Prometheus's shape: the
// head stats and four top-N lists); a metric name opens the query page with its series count.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const LISTS = ["seriesCountByMetricName", "labelValueCountByLabelName",
    "memoryInBytesByLabelName", "seriesCountByLabelValuePair"];
  const params = new URLSearchParams(location.search);

  async function getJSON(url) {
    const r = await fetch(url);
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok || !body || body.status !== "success") {
      throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    }
    return body;
  }

  function showError(msg) {
    $("error").textContent = msg;
    $("error").hidden = !msg;
  }

  async function load() {
    const ds = $("dataset").value;
    const limit = $("limit").value || "10";
    history.replaceState(null, "", "/cardinality?" + new URLSearchParams({ dataset: ds, limit }));
    try {
      const body = await getJSON(`/promql/${encodeURIComponent(ds)}/api/v1/status/tsdb?limit=${encodeURIComponent(limit)}`);
      const d = body.data;
      const h = d.headStats;
      $("head").textContent = `${h.numSeries} series, ${h.numLabelPairs} label pairs, ${h.chunkCount} chunks` +
        (body.warnings ? ` (${body.warnings.join("; ")})` : "");
      for (const name of LISTS) {
        const tbody = $(name).tBodies[0];
        tbody.replaceChildren();
        for (const row of d[name]) {
          const tr = el("tr");
          const cell = el("td");
          if (name === "seriesCountByMetricName") {
            const a = el("a", row.name);
            a.href = "/#" + new URLSearchParams({ q: `count({__name__="${row.name}"})`, ds, mode: "table" }).toString();
            cell.append(a);
          } else {
            cell.textContent = row.name;
          }
          tr.append(cell, el("td", String(row.value), "num"));
          tbody.append(tr);
        }
        if (!d[name].length) {
          const tr = el("tr");
          tr.append(el("td", "none", "muted"));
          tbody.append(tr);
        }
      }
      showError("");
    } catch (e) {
      showError(String(e.message || e));
    }
  }

  async function init() {
    try {
      const datasets = (await getJSON("/api/v1/cluster")).data;
      const sel = $("dataset");
      for (const d of datasets) sel.append(new Option(d.dataset, d.dataset));
      if (params.get("dataset")) sel.value = params.get("dataset");
      if (params.get("limit")) $("limit").value = params.get("limit");
    } catch (e) {
      showError(String(e.message || e));
    }
    $("dataset").addEventListener("change", load);
    $("limit").addEventListener("change", load);
    load();
  }
  init();
})();
