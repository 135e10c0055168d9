// Rules page: the rule groups the evaluator publishes (/api/v1/rules: each group's interval,
// last evaluation and duration; each rule's health, last error and query) and the pending and
// firing alerts (/api/v1/alerts), refreshed every 5 s.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const labelText = (m) => Object.entries(m || {}).map(([k, v]) => `${k}="${v}"`).join(", ");
  const never = "0001-01-01T00:00:00Z";
  const when = (t) => (!t || t === never ? "never" : new Date(t).toLocaleString());
  const ms = (s) => (s === undefined ? "" : `${(s * 1000).toFixed(1)} ms`);

  async function getJSON(url) {
    const r = await fetch(url);
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok || !body || body.status !== "success") {
      throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    }
    return body.data;
  }

  function renderAlerts(alerts) {
    const tbody = $("alerts").tBodies[0];
    tbody.replaceChildren();
    $("alert-count").textContent = `${alerts.filter((a) => a.state === "firing").length} firing, ` +
      `${alerts.filter((a) => a.state === "pending").length} pending`;
    if (!alerts.length) {
      const tr = el("tr");
      const td = el("td", "No alert is pending or firing.", "muted");
      td.colSpan = 6;
      tr.append(td);
      tbody.append(tr);
      return;
    }
    for (const a of alerts) {
      const tr = el("tr");
      tr.dataset.alertname = a.labels.alertname || "";
      const labels = Object.fromEntries(Object.entries(a.labels).filter(([k]) => k !== "alertname"));
      tr.append(el("td", a.labels.alertname || ""), el("td"), el("td", labelText(labels)),
        el("td", when(a.activeAt)), el("td", a.value, "num"),
        el("td", (a.annotations && (a.annotations.summary || a.annotations.description)) || ""));
      tr.children[1].append(el("span", a.state, `pill state-${a.state}`));
      tbody.append(tr);
    }
  }

  function renderGroups(groups) {
    const box = $("groups");
    box.replaceChildren();
    $("group-count").textContent = `${groups.length} groups, ` +
      `${groups.reduce((n, g) => n + g.rules.length, 0)} rules`;
    if (!groups.length) {
      box.append(el("p", "No rules are loaded (start filodb up --rules 'rules/*.yml' or filodb rules).", "muted"));
      return;
    }
    for (const g of groups) {
      const sec = el("div", undefined, "rule-group");
      sec.dataset.group = g.name;
      sec.append(el("h3", `${g.name}`),
        el("p", `${g.file} · every ${g.interval}s · last evaluation ${when(g.lastEvaluation)} ` +
          `(${ms(g.evaluationTime)})`, "muted"));
      const t = el("table", undefined, "grid");
      const head = el("tr");
      for (const h of ["Rule", "Type", "Health", "State", "Query", "Last evaluation", "Took", "Error"]) head.append(el("th", h));
      t.append(el("thead"), el("tbody"));
      t.tHead.append(head);
      for (const r of g.rules) {
        const tr = el("tr");
        tr.dataset.rule = r.name;
        tr.append(el("td", r.name), el("td", r.type), el("td"), el("td", r.state || ""),
          el("td", r.query, "mono"), el("td", when(r.lastEvaluation)), el("td", ms(r.evaluationTime), "num"),
          el("td", r.lastError || "", "error-text"));
        tr.children[2].append(el("span", r.health, `pill health-${r.health}`));
        t.tBodies[0].append(tr);
      }
      sec.append(t);
      box.append(sec);
    }
  }

  async function refresh() {
    try {
      const [rules, alerts] = await Promise.all([getJSON("/api/v1/rules"), getJSON("/api/v1/alerts")]);
      renderGroups(rules.groups);
      renderAlerts(alerts.alerts);
      $("error").hidden = true;
    } catch (e) {
      $("error").textContent = `Cannot load rules: ${e.message}`;
      $("error").hidden = false;
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
