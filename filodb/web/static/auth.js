// Tokens for the UI. When the server has an auth file, its data routes answer 401 without a
// token: this script (loaded before each page's own) wraps window.fetch so that such an answer
// asks for a token once, keeps it for the browser session (sessionStorage, gone when the tab
// closes) and sends it as "Authorization: Bearer <token>" on every same-origin request, then
// retries. A refused token is asked for again; cancelling the prompt stops asking until the
// page is reloaded (the page shows the server's 401 message meanwhile).
(function () {
  "use strict";
  const KEY = "filodb.token";
  const plainFetch = window.fetch.bind(window);
  let asking = null; // one prompt shared by the requests that are refused together
  let declined = false;

  function token() {
    try { return sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }
  function keep(t) {
    try { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); } catch (e) { /* private mode */ }
  }
  function withToken(init, t) {
    const out = Object.assign({}, init || {});
    const h = new Headers(out.headers || {});
    if (t) h.set("Authorization", "Bearer " + t);
    out.headers = h;
    return out;
  }
  function ask(refused) {
    if (!asking) {
      asking = new Promise((resolve) => {
        setTimeout(() => {
          const t = (window.prompt(refused ? "FiloDB refused that token. Token:" : "FiloDB needs a token (the auth file's token):", "") || "").trim();
          if (t) keep(t); else declined = true;
          asking = null;
          resolve(t);
        }, 0);
      });
    }
    return asking;
  }

  window.fetch = async function (input, init) {
    const url = typeof input === "string" ? input : input.url;
    if (new URL(url, location.href).origin !== location.origin) return plainFetch(input, init);
    let sent = token();
    let resp = await plainFetch(input, withToken(init, sent));
    for (let tries = 0; resp.status === 401 && tries < 3; tries++) {
      let t = token();
      if (!t || t === sent) { // nobody has asked since this request went out: ask now
        if (declined) break;
        t = await ask(!!sent);
        if (!t) break;
      }
      sent = t;
      resp = await plainFetch(input, withToken(init, t));
    }
    return resp;
  };
  window.filodbAuth = { token, forget() { keep(""); } };
})();
