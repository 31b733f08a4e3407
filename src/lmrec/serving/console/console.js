// lmrec console: vanilla JavaScript against the service's own HTTP API (same origin, no build step).
// The API key lives in sessionStorage (gone when the tab closes) and is sent as a Bearer token.
// Every value from the API is written with textContent, never as HTML.
"use strict";
(function () {
  const ROOT = document.body.dataset.root || "";
  const KEY = "lmrec.console.key";
  const PAGE = 20;
  const $ = (id) => document.getElementById(id);
  const state = { key: sessionStorage.getItem(KEY) || "", admin: false, paths: null,
                  cursors: [""], page: 0, next: null, user: "", lastMetrics: null, timer: null, flash: "" };

  // ---- HTTP ------------------------------------------------------------------------------------
  class ApiProblem extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function readable(status, body, retryAfter) {
    const detail = body && typeof body.detail === "string" ? body.detail : "";
    if (status === 401) return "This key is not valid" + (detail ? " (" + detail + ")" : "") + ". Enter another API key.";
    if (status === 403) return "This key may not do that: " + (detail || "a scope is missing") + ".";
    if (status === 404) return detail ? detail.charAt(0).toUpperCase() + detail.slice(1) + "." : "Not found.";
    if (status === 429) return "Too many requests; try again in " + (retryAfter || "a few") + " s.";
    if (status === 503) return "The service is not ready: " + (detail || "starting") + ". Try again shortly.";
    if (status === 422 && body && Array.isArray(body.detail)) {
      return "The request was refused: " + body.detail.map((e) => {
        const loc = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body" && p !== "query" && p !== "path").join(".") : "";
        return (loc ? loc + ": " : "") + (e.msg || "invalid");
      }).join("; ") + ".";
    }
    return "The service answered " + status + (detail ? ": " + detail : "") + ".";
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (state.key) headers["Authorization"] = "Bearer " + state.key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(ROOT + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiProblem(0, "Cannot reach the service (" + e.message + ").");
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!r.ok) throw new ApiProblem(r.status, readable(r.status, data, r.headers.get("Retry-After")));
    return data;
  }

  function showError(e) {
    const box = $("error");
    box.textContent = e instanceof ApiProblem ? e.message : "Something went wrong: " + (e && e.message || e);
    box.hidden = false;
    if (e instanceof ApiProblem && e.status === 401) setKeyState("key not valid");
  }
  function clearError() { $("error").hidden = true; $("error").textContent = ""; }
  async function guarded(fn) {
    clearError();
    try { return await fn(); } catch (e) { showError(e); return undefined; }
  }

  // ---- DOM helpers -------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "onclick") n.addEventListener("click", v);
      else n.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : String(c));
    return n;
  }
  function clear(node, ...children) { node.replaceChildren(...children); return node; }
  const fmt = (x, d = 3) => (typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString("en") : x.toFixed(d)) : (x === null || x === undefined ? "–" : String(x)));
  const titleOf = (entry) => (entry.item && entry.item.title) || entry.title || entry.item_id;

  function tags(list) { return (list || []).map((c) => el("span", { class: "tag" }, c)); }

  // what an explanation says, as one line of text
  function why(ex) {
    if (!ex) return "";
    const parts = [];
    if (ex.text) parts.push(ex.text);
    else if (ex.because) parts.push("because of " + (ex.because.title || ex.because.item_id) +
                                    (typeof ex.because.cosine === "number" ? " (cosine " + ex.because.cosine.toFixed(2) + ")" : ""));
    if (typeof ex.cosine === "number") parts.push("cosine " + ex.cosine.toFixed(3));
    if (ex.matched_terms && ex.matched_terms.length) parts.push("matched: " + ex.matched_terms.join(", "));
    if (ex.query_terms && ex.query_terms.length) parts.push("query terms: " + ex.query_terms.join(", "));
    if (ex.shared_categories && ex.shared_categories.length) parts.push("shared categories: " + ex.shared_categories.join(", "));
    if (typeof ex.profile_cosine === "number") parts.push("profile cosine " + ex.profile_cosine.toFixed(3));
    if (ex.channels && ex.channels.length) parts.push("via " + ex.channels.join(" + "));
    return parts.join(" · ");
  }

  // one ranked entry: title (a button running `onChoose`), score, categories, explanation
  function rankedEntry(entry, onChoose, label) {
    const title = el("button", { type: "button", class: "title", "aria-label": (label || "Open") + " " + titleOf(entry),
                                 "data-item": entry.item_id, onclick: () => onChoose(entry) }, titleOf(entry));
    const li = el("li", { "data-item": entry.item_id },
      el("div", { class: "item-head" }, title, el("span", { class: "muted" }, entry.item_id),
         el("span", { class: "score" }, typeof entry.score === "number" ? "score " + entry.score.toFixed(3) : "")),
      el("div", {}, ...tags(entry.item && entry.item.categories || entry.categories)));
    const text = why(entry.explanation) || (entry.sources && entry.sources.length ? "via " + entry.sources.join(" + ") : "");
    if (text) li.append(el("div", { class: "why" }, text));
    return li;
  }

  // ---- key ---------------------------------------------------------------------------------------
  function setKeyState(text) { $("key-state").textContent = text; }

  async function useKey(key) {
    state.key = key;
    if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
    state.admin = false;
    if (!key) { setKeyState("no key"); return; }
    setKeyState("checking…");
    const ok = await guarded(async () => {
      await api("GET", "/items?limit=1");
      return true;
    });
    if (!ok) {
      sessionStorage.removeItem(KEY);   // a refused key is not kept for the next load
      return;
    }
    try { await api("GET", "/admin/stats"); state.admin = true; } catch (e) { state.admin = false; }
    setKeyState(state.admin ? "key ok (admin)" : "key ok");
    await detectFaq();
    await loadCatalog(0);
    loadUsers();
    if (state.user) showUser(state.user);
  }

  async function detectFaq() {
    if (state.paths === null) {
      try { state.paths = Object.keys((await api("GET", "/openapi.json")).paths || {}); } catch (e) { state.paths = []; }
    }
    $("faq-box").hidden = !state.paths.includes("/faq");
  }

  // ---- catalog, search, item -----------------------------------------------------------------------
  async function loadCatalog(page) {
    await guarded(async () => {
      const after = state.cursors[page] || "";
      const data = await api("GET", "/items?limit=" + PAGE + "&after=" + encodeURIComponent(after));
      state.page = page;
      state.cursors[page + 1] = data.next;
      $("results-title").textContent = "Catalog";
      $("results-note").textContent = "Page " + (page + 1) + " of " + Math.max(1, Math.ceil(data.total / PAGE)) + ", in item id order.";
      $("catalog-count").textContent = fmt(data.total) + " items";
      $("catalog-next").disabled = !data.next;
      $("catalog-first").disabled = page === 0;
      clear($("results"), ...data.items.map((it) => rankedEntry(it, openItem)));
    });
  }

  async function search(q, user) {
    if (!q.trim()) { showError(new ApiProblem(0, "Type something to search for.")); return; }
    await guarded(async () => {
      let path = "/search?k=20&explain=true&fields=title,categories&q=" + encodeURIComponent(q);
      if (user) path += "&user_id=" + encodeURIComponent(user);
      const data = await api("GET", path);
      $("results-title").textContent = "Search: " + q;
      $("results-note").textContent = data.items.length + " results" + (user ? " for " + user : "") +
        " · model " + (data.model_version || "none") + " · " + fmt(sum(data.timings_ms), 1) + " ms";
      $("catalog-next").disabled = true;
      $("catalog-first").disabled = false;
      clear($("results"), ...data.items.map((it) => rankedEntry(it, openItem)));
      if (!data.items.length) $("results").append(el("li", {}, "Nothing found."));
    });
  }

  async function openItem(entry) {
    await guarded(async () => {
      const it = await api("GET", "/items/" + encodeURIComponent(entry.item_id));
      const rows = [["Id", it.item_id], ["Categories", (it.categories || []).join(", ") || "–"],
                    ["Available", it.available === false ? "no" : "yes"]];
      for (const [k, v] of Object.entries(it.attributes || {})) rows.push([k, typeof v === "object" ? JSON.stringify(v) : v]);
      clear($("item-detail"), el("h3", {}, it.title || it.item_id), it.text ? el("p", {}, it.text) : "",
            el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, String(v))))));
      $("item-detail").classList.remove("muted");
      const sim = await api("GET", "/items/" + encodeURIComponent(it.item_id) + "/similar?k=8&explain=true&fields=title,categories");
      clear($("similar"), ...sim.items.map((s) => rankedEntry(s, openItem)));
    });
  }

  async function askFaq(q) {
    if (!q.trim()) return;
    await guarded(async () => {
      const a = await api("GET", "/faq?k=3&q=" + encodeURIComponent(q));
      const box = clear($("faq-answer"));
      if (a.abstained || !a.answer) {
        box.append(el("p", {}, "No confident answer" + (a.intent ? " (closest intent: " + a.intent + ")" : "") +
                      ": hand the question to a person."));
      } else {
        box.append(el("p", {}, el("strong", {}, a.answer)),
                   el("p", { class: "why" }, "matched “" + a.matched_question + "”" + (a.intent ? " · intent " + a.intent : "") +
                      (typeof a.score === "number" ? " · confidence " + a.score.toFixed(2) : "")));
      }
    });
  }

  // ---- users -------------------------------------------------------------------------------------
  async function loadUsers() {
    try {
      const data = await api("GET", "/users?limit=200");
      clear($("user-ids"), ...data.users.map((u) => el("option", { value: u.user_id })));
      if (!$("user-id").value && data.users.length) $("user-id").placeholder = "e.g. " + data.users[0].user_id;
    } catch (e) { /* the list is a convenience only */ }
  }

  async function showUser(user, fresh) {
    user = user.trim();
    if (!user) { showError(new ApiProblem(0, "Enter a user id.")); return; }
    state.user = user;
    await guarded(async () => {
      const recs = await api("GET", "/recommend/" + encodeURIComponent(user) + "?k=10&explain=true&fields=title,categories");
      $("recs-title").textContent = "Recommendations for " + user;
      clear($("recs"), ...recs.items.map((it) => rankedEntry(it, (e) => clickItem(user, e, recs.ranking_id), "Click")));
      if (!recs.items.length) $("recs").append(el("li", {}, "No recommendations."));
      $("recs").dataset.rankingId = recs.ranking_id || "";
      if (!fresh) $("recs-note").textContent = "model " + (recs.model_version || "none (fallback)") + " · " + fmt(sum(recs.timings_ms), 1) + " ms";
      await showHistory(user, fresh);
    });
  }

  async function showHistory(user, fresh, before) {
    $("history-title").textContent = "History of " + user;
    let h;
    try {
      h = await api("GET", "/users/" + encodeURIComponent(user) + "/history?limit=30&fields=title,categories" +
                    (before ? "&before=" + before : ""));
    } catch (e) {
      if (e instanceof ApiProblem && e.status === 404) {
        $("history-note").textContent = "No events yet: a new user gets the popular items.";
        clear($("history"));
        $("history-older").hidden = true;
        return;
      }
      throw e;
    }
    const shown = (before ? $("history").children.length : 0) + h.events.length;
    $("history-note").textContent = fmt(h.total) + " events, newest first" + (h.total > shown ? " (latest " + shown + " shown)" : "") + ".";
    state.historyNext = h.next;
    $("history-older").hidden = !h.next;
    const items = h.events.map((ev, i) => {
      const li = el("li", { "data-item": ev.item_id, "data-seq": ev.seq, class: fresh && i === 0 ? "fresh" : null },
        el("div", { class: "item-head" }, el("span", { class: "tag" }, ev.kind), el("span", {}, titleOf(ev)),
           el("span", { class: "score" }, ev.timestamp ? new Date(ev.timestamp * 1000).toLocaleString("en-GB") : "")));
      return li;
    });
    if (before) $("history").append(...items); else clear($("history"), ...items);
  }

  async function clickItem(user, entry, rankingId) {
    await guarded(async () => {
      const body = { user_id: user, item_id: entry.item_id, kind: "click" };
      if (rankingId) body.ranking_id = rankingId;
      const out = await api("POST", "/events", body);
      $("recs-note").textContent = "Recorded a click on " + titleOf(entry) + (out.seqs && out.seqs.length ? " (event " + out.seqs[0] + ")" : "") +
        "; the lists below are refreshed.";
      await showUser(user, true);
    });
  }

  // ---- status ------------------------------------------------------------------------------------
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + (typeof b === "number" ? b : 0), 0);

  function parseMetrics(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      out.push({ name: m[1], labels, value: parseFloat(m[3]) });
    }
    return out;
  }

  function table(node, head, rows) {
    clear(node, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h))),
          ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { class: c instanceof Node ? "bar-cell" : null }, c instanceof Node ? c : fmt(c))))));
  }

  function bar(share) { const b = el("div", { class: "bar" }); b.style.width = Math.round(100 * share) + "%"; return b; }

  async function loadStatus() {
    if (!state.key) { $("status-note").textContent = "Enter an API key first."; return; }
    $("train-now").hidden = $("reload-latest").hidden = !state.admin;
    if (!state.admin) {
      clear($("experiment")); $("experiment-note").textContent = "";
      $("status-note").textContent = "Service status and metrics need a key with the admin scope.";
      clear($("status-cards")); clear($("routes")); clear($("stages")); clear($("drift")); clear($("training"));
      return;
    }
    await guarded(async () => {
      const st = await api("GET", "/admin/stats");
      const cards = [["Items", st.n_items], ["Available", st.n_available], ["Users", st.n_users], ["Events", st.n_events],
                     ["Events since training", st.events_since_train], ["Model version", st.model_version || "none"],
                     ["Ranker", st.pipeline && st.pipeline.ranker], ["Encoder", st.encoder], ["Index", st.index_size + " vectors (" + st.index + ")"],
                     ["Ready", st.ready ? "yes" : "no"]];
      clear($("status-cards"), ...cards.map(([k, v]) => el("div", { class: "stat" }, el("div", { class: "label" }, k), el("div", { class: "value" }, fmt(v)))));
      const tr = st.training || {};
      const shown = (k, v) => (typeof v === "number" && /_at$/.test(k) ? new Date(v * 1000).toLocaleString("en-GB")
                               : typeof v === "object" && v !== null ? JSON.stringify(v) : v);
      table($("training"), ["Field", "Value"], Object.entries(tr).map(([k, v]) => [k.replace(/_/g, " "), shown(k, v)]));
      const d = st.drift || {};
      table($("drift"), ["Measure", "Value"], [["events in window", d.window_events], ["training events", d.training_events],
            ["kind mix TV distance", d.kind_mix_tv], ["item popularity JS", d.item_js], ["JS baseline", d.item_js_baseline],
            ["unknown item share", d.unknown_item_share], ["cold item share", d.cold_item_share]]);
      await loadExperiment();
      let note = (state.flash ? state.flash + " " : "") + "Updated " + new Date().toLocaleTimeString("en-GB") + ".";
      state.flash = "";
      try {
        const r = await fetch(ROOT + "/metrics", { headers: { "Authorization": "Bearer " + state.key } });
        if (!r.ok) throw new Error(String(r.status));
        const ms = parseMetrics(await r.text());
        const routes = {};
        for (const m of ms) {
          const route = m.labels.route === "unmatched" ? "other paths (console files, 404s)" : m.labels.route;
          if (!route) continue;
          const row = routes[route] = routes[route] || { n: 0, errors: 0, sum: 0, count: 0 };
          if (m.name.endsWith("http_requests_total")) { row.n += m.value; if (/^[45]/.test(m.labels.status || "")) row.errors += m.value; }
          if (m.name.endsWith("http_request_duration_seconds_sum")) row.sum += m.value;
          if (m.name.endsWith("http_request_duration_seconds_count")) row.count += m.value;
        }
        const max = Math.max(1, ...Object.values(routes).map((r) => r.n));
        table($("routes"), ["Route", "Requests", "Errors", "Mean ms", ""],
              Object.entries(routes).sort((a, b) => b[1].n - a[1].n).slice(0, 14)
                .map(([k, r]) => [k, r.n, r.errors, r.count ? (1000 * r.sum / r.count).toFixed(1) : null, bar(r.n / max)]));
        const stages = {};
        for (const m of ms) {
          if (!m.labels.stage || !m.labels.endpoint) continue;
          const key = m.labels.endpoint + " · " + m.labels.stage;
          const row = stages[key] = stages[key] || { sum: 0, count: 0 };
          if (m.name.endsWith("stage_duration_seconds_sum")) row.sum += m.value;
          if (m.name.endsWith("stage_duration_seconds_count")) row.count += m.value;
        }
        const mean = (r) => (r.count ? 1000 * r.sum / r.count : 0);
        const slowest = Math.max(0.001, ...Object.values(stages).map(mean));
        table($("stages"), ["Endpoint · stage", "Calls", "Mean ms", ""],
              Object.entries(stages).filter(([, r]) => r.count).sort((a, b) => mean(b[1]) - mean(a[1])).slice(0, 12)
                .map(([k, r]) => [k, r.count, mean(r).toFixed(2), bar(mean(r) / slowest)]));
        const events = ms.filter((m) => m.name.endsWith("events_ingested_total")).reduce((a, m) => a + m.value, 0);
        const now = Date.now();
        if (state.lastMetrics) {
          const rate = (events - state.lastMetrics.events) / Math.max(0.001, (now - state.lastMetrics.at) / 1000);
          note += " Events ingested by this process: " + fmt(events) + " (" + rate.toFixed(2) + "/s since the last refresh).";
        } else note += " Events ingested by this process: " + fmt(events) + ".";
        state.lastMetrics = { events, at: now };
      } catch (e) {
        clear($("routes")); clear($("stages"));
        note += " Request metrics are not available to this key.";
      }
      $("status-note").textContent = note;
    });
  }

  const pct = (r) => (r && typeof r.value === "number" ? (100 * r.value).toFixed(1) + "% [" + (100 * r.ci_low).toFixed(1) +
                     ", " + (100 * r.ci_high).toFixed(1) + "]" : "–");

  async function loadExperiment() {
    let rep;
    try { rep = await api("GET", "/admin/experiments"); } catch (e) {
      if (e instanceof ApiProblem && e.status === 404) {
        $("experiment-note").textContent = "No experiment (start one with POST /admin/experiments).";
        clear($("experiment"));
        return;
      }
      throw e;
    }
    const ex = rep.experiment || {};
    $("experiment-note").textContent = (ex.name || "experiment") + (rep.running ? " (running)" : " (stopped)") +
      ": 95% intervals; clicks within " + fmt(rep.window_s) + " s of a ranking count.";
    const rows = Object.entries(rep.variants || {}).map(([v, r]) => [v, r.version, r.rankings, r.users, pct(r.ctr), pct(r.conversion)]);
    const d = (rep.difference_b_minus_a || {}).ctr;
    if (d) rows.push(["B − A", "", "", "", pct(d), pct((rep.difference_b_minus_a || {}).conversion)]);
    table($("experiment"), ["Variant", "Version", "Rankings", "Users", "CTR", "Conversion"], rows);
  }

  async function train() {
    await guarded(async () => {
      await api("POST", "/admin/train", { wait: false });
      state.flash = "Training started; its progress shows under Training.";
      setTimeout(loadStatus, 1500);
    });
  }

  async function reloadLatest() {
    await guarded(async () => {
      const out = await api("POST", "/admin/reload", {});
      state.flash = "Now serving " + out.model_version + ".";
      await loadStatus();
    });
  }

  // ---- tabs and wiring -----------------------------------------------------------------------------
  const TABS = ["shop", "user", "status"];
  function selectTab(name, focus) {
    for (const t of TABS) {
      $("tab-" + t).setAttribute("aria-selected", String(t === name));
      $("tab-" + t).tabIndex = t === name ? 0 : -1;
      $("panel-" + t).hidden = t !== name;
    }
    clearInterval(state.timer);
    if (focus) $("tab-" + name).focus();
    if (name === "status") { loadStatus(); state.timer = setInterval(loadStatus, 10000); }
  }

  // the tab list's keys (WAI-ARIA tabs): left / right / home / end move between tabs
  function tabKeys(ev) {
    const i = TABS.findIndex((t) => $("tab-" + t).getAttribute("aria-selected") === "true");
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1 + TABS.length, Home: 0, End: TABS.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    selectTab(TABS[to % TABS.length], true);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const t of TABS) $("tab-" + t).addEventListener("click", () => selectTab(t));
    document.querySelector("[role=tablist]").addEventListener("keydown", tabKeys);
    selectTab("shop");
    $("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); useKey($("api-key").value.trim()); $("api-key").value = ""; });
    $("key-forget").addEventListener("click", () => { useKey(""); clear($("results")); clear($("recs")); clear($("history")); });
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("search-q").value, $("search-user").value.trim()); });
    $("catalog-first").addEventListener("click", () => loadCatalog(0));
    $("catalog-next").addEventListener("click", () => loadCatalog(state.page + 1));
    $("faq-form").addEventListener("submit", (ev) => { ev.preventDefault(); askFaq($("faq-q").value); });
    $("user-form").addEventListener("submit", (ev) => { ev.preventDefault(); selectTab("user"); showUser($("user-id").value); });
    $("history-older").addEventListener("click", () => guarded(() => showHistory(state.user, false, state.historyNext)));
    $("status-refresh").addEventListener("click", loadStatus);
    $("train-now").addEventListener("click", train);
    $("reload-latest").addEventListener("click", reloadLatest);
    if (state.key) useKey(state.key); else $("api-key").focus();
  });
})();
