"use strict";
// Operations dashboard: live map and event stream (SSE), review queue with evidence and
// verdicts, receipts and disputes, store health, analytics.
(() => {
  const { api, el, svg, fmtT, fill, instant, when } = WO;
  let token = WO.tokenFromHash("wo-operator");
  let layout = null, current = "live";
  const people = new Map();           // track id → {pts, session, who, staff, cart, alert, left, seen}
  let simNow = null, latestT = null, rate = 1, lastArrival = null, chunkLen = 5;
  const STAFF_COLOR = "#1b7a35";
  const COLORS = ["#0b5cad", "#b3261e", "#1b7a35", "#6a3fb5", "#9a5b00", "#00777a"];

  // ---- sign-in --------------------------------------------------------------------------
  async function start() {
    try { layout = await api(token, "GET", "/v1/ops/store"); }
    catch (e) {
      if (e.status === 401) localStorage.removeItem("wo-operator");  // revoked or mistyped
      document.getElementById("signin").hidden = false;
      document.getElementById("signin-error").textContent = token ? e.message : "";
      return;
    }
    document.getElementById("signin").hidden = true;
    document.getElementById("tabs").hidden = false;
    document.getElementById("signout").hidden = false;
    const select = WO.tabs(document.getElementById("tabs"), name => { current = name; refresh(name); });
    select(document.getElementById("tab-live"));
    let cutOff = false;
    WO.stream(token, "/v1/ops/stream?backlog_s=30", onEvent, (st, status) => {
      // the stream ends when the token is revoked, and its reconnection is refused
      if (status === 401 || status === 403) return WO.signOut("wo-operator", "This token no longer works (it was revoked): sign in with a new one.");
      const c = document.getElementById("conn"); c.textContent = st === "live" ? "live" : "offline";
      c.className = "pill" + (st === "live" ? " live" : "");
      if (st === "live" && cutOff) catchUp();
      cutOff = st !== "live";
    });
    loadCases(); loadPayments(); loadOpenAlerts(); loadMail();
    requestAnimationFrame(frame);
  }
  // a shared desk browser: the next person must not find the dashboard signed in
  document.getElementById("signout").addEventListener("click", () => WO.signOut("wo-operator"));
  document.getElementById("signin-form").addEventListener("submit", e => {
    e.preventDefault(); token = document.getElementById("token").value.trim();
    localStorage.setItem("wo-operator", token); start();
  });

  // ---- map --------------------------------------------------------------------------------
  function bounds() {
    const xs = layout.floor.map(p => p[0]), ys = layout.floor.map(p => p[1]);
    return { x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) };
  }
  // store y points up, SVG y down
  function Y(y) { const b = bounds(); return b.y1 - (y - b.y0); }
  function drawFloor(root, opts = {}) {
    const b = bounds(), pad = 0.4;
    root.setAttribute("viewBox", `${b.x0 - pad} ${b.y0 - pad} ${b.x1 - b.x0 + 2 * pad} ${b.y1 - b.y0 + 2 * pad}`);
    root.replaceChildren();
    root.append(svg("polygon", { points: layout.floor.map(p => `${p[0]},${Y(p[1])}`).join(" "), fill: "#fff", stroke: "#44484f", "stroke-width": 0.05 }));
    for (const g of layout.gates) {
      const [x0, y0, x1, y1] = g.box;
      root.append(svg("rect", { x: x0, y: Y(y1), width: x1 - x0, height: y1 - y0, fill: g.kind === "entry" ? "#d7f0dc" : "#f7d4d1", stroke: "#44484f", "stroke-width": 0.02 }),
        svg("text", { x: (x0 + x1) / 2, y: Y((y0 + y1) / 2) + 0.12, "font-size": 0.35, "text-anchor": "middle", fill: "#1a1a1a" }, g.kind));
    }
    for (const g of layout.gondolas) {
      const [x0, y0, x1, y1] = g.box;
      root.append(svg("rect", { x: x0, y: Y(y1), width: x1 - x0, height: y1 - y0, fill: "#c9ccd1", stroke: "#5a6270", "stroke-width": 0.03 }, svg("title", {}, g.id)));
      if (!opts.plates) root.append(svg("text", { x: (x0 + x1) / 2, y: Y((y0 + y1) / 2) + 0.1, "font-size": 0.28, "text-anchor": "middle", fill: "#1a1a1a" }, g.id));
    }
  }
  function onPositions(ev) {
    const d = ev.data, now = performance.now();
    for (const p of d.people) {
      let o = people.get(p.track);
      if (!o) { o = { pts: [] }; people.set(p.track, o); }
      Object.assign(o, { session: p.session, who: p.who, cart: p.cart, alert: p.alert, left: p.left, seen: d.t1, staff: p.staff ?? (p.credential || "").startsWith("staff:") });
      o.pts.push(...p.pts);
      const cut = d.t1 - 30; while (o.pts.length && o.pts[0][0] < cut) o.pts.shift();
    }
    if (lastArrival !== null && d.t1 > latestT) {
      const r = (d.t1 - latestT) / ((now - lastArrival) / 1000);
      if (isFinite(r) && r > 0) rate = 0.7 * rate + 0.3 * Math.min(r, 50);
    }
    chunkLen = Math.max(0.5, d.t1 - d.t0);
    if (latestT === null || d.t1 > latestT) { latestT = d.t1; lastArrival = now; }
    if (simNow === null) simNow = d.t0;
    for (const [k, o] of people) if (o.seen < latestT - 10) people.delete(k);
  }
  function at(o, t) {
    const p = o.pts; if (!p.length) return null;
    if (t <= p[0][0]) return p[0][0] - t < 1 ? p[0] : null;
    for (let i = 1; i < p.length; i++) if (p[i][0] >= t) {
      const a = p[i - 1], b = p[i], f = (t - a[0]) / Math.max(1e-6, b[0] - a[0]);
      return [t, a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
    }
    const last = p[p.length - 1]; return (o.left && t - last[0] > 1) ? null : last;
  }
  let lastFrame = null;
  function frame(ts) {
    if (lastFrame !== null && simNow !== null) {
      simNow += (ts - lastFrame) / 1000 * rate;
      if (simNow > latestT) simNow = latestT;
      if (simNow < latestT - 2.5 * chunkLen) simNow = latestT - chunkLen;
    }
    lastFrame = ts;
    if (current === "live" && layout) drawPeople();
    requestAnimationFrame(frame);
  }
  let floorDrawn = false;
  function drawPeople() {
    const map = document.getElementById("map");
    if (!floorDrawn) { drawFloor(map); map.append(svg("g", { id: "paths" }), svg("g", { id: "marks" })); floorDrawn = true; }
    const paths = map.querySelector("#paths"), marks = map.querySelector("#marks");
    paths.replaceChildren(); marks.replaceChildren();
    const list = [];
    for (const [track, o] of people) {
      const p = simNow === null ? null : at(o, simNow); if (!p) continue;
      const trail = o.pts.filter(q => q[0] <= simNow && q[0] >= simNow - 20);
      const color = o.staff ? STAFF_COLOR : o.session ? "#0b5cad" : "#b3261e";
      paths.append(svg("polyline", { points: trail.map(q => `${q[1]},${Y(q[2])}`).join(" ") + ` ${p[1]},${Y(p[2])}`, fill: "none", stroke: color, "stroke-opacity": 0.35, "stroke-width": 0.06 }));
      // an associate by their staff account's name (never a shopper: a pseudonym at most)
      const label = o.staff ? `${o.who || o.session} (staff)` : o.who || o.session || `track ${track}`;
      const g = svg("g", { class: "person", "data-track": track, "data-session": o.session || "", "data-staff": o.staff ? "true" : null, "data-x": p[1].toFixed(2), "data-y": p[2].toFixed(2) },
        svg("title", {}, `${label}${o.staff ? "" : `: ${o.cart} in cart`}${o.alert ? ", alert" : ""}`),
        svg("circle", { cx: p[1], cy: Y(p[2]), r: 0.22, fill: color, stroke: "#fff", "stroke-width": 0.04 }),
        svg("text", { x: p[1], y: Y(p[2]) + 0.09, "font-size": 0.26, "text-anchor": "middle", fill: "#fff", "font-weight": 700 }, o.staff ? "" : String(o.cart)),
        svg("text", { x: p[1] + 0.3, y: Y(p[2]) - 0.25, "font-size": 0.24, fill: "#1a1a1a" }, label));
      if (o.alert) g.append(svg("circle", { cx: p[1] + 0.2, cy: Y(p[2]) - 0.2, r: 0.13, fill: "#b3261e" }), svg("text", { x: p[1] + 0.2, y: Y(p[2]) - 0.12, "font-size": 0.22, "text-anchor": "middle", fill: "#fff", "font-weight": 700 }, "!"));
      marks.append(g);
      list.push(el("li", { "data-track": track }, `${label}${o.staff ? "" : ` · ${o.cart} item${o.cart === 1 ? "" : "s"}`}${o.alert ? " · alert" : ""}`));  // staff carry no cart
    }
    document.getElementById("clock").textContent = simNow === null ? "" : "store time " + fmtT(simNow);
    const ul = document.getElementById("people");
    if (ul.childElementCount !== list.length || Math.random() < 0.05) ul.replaceChildren(...list);
  }

  // ---- event stream -----------------------------------------------------------------------
  const filters = new Set(["entry", "exit", "pick", "put", "stock", "alert", "review"]);
  // restocks and removals (a staff hand, or nobody's on a store closed for restocking) are
  // stock moves, not a shopper's picks and put-backs: labelled and filtered apart
  const FILTER_OF = { restock: "stock", removal: "stock" }, LABEL_OF = { put: "put-back" };
  document.querySelectorAll("[data-filter]").forEach(cb => cb.addEventListener("change", () => {
    cb.checked ? filters.add(cb.dataset.filter) : filters.delete(cb.dataset.filter);
    document.querySelectorAll("#events li").forEach(li => li.hidden = !filters.has(li.dataset.filter));
  }));
  // newest store time first: a pick is decided a few seconds after it happened (the engine waits
  // for the hands to leave the shelf), so arrival order would put it after later gate passes
  function logEvent(kind, t, text) {
    const ol = document.getElementById("events"), filter = FILTER_OF[kind] || kind;
    const li = el("li", { "data-kind": kind, "data-filter": filter, "data-t": String(t) }, el("span", { class: "k " + kind, text: LABEL_OF[kind] || kind }), ` ${fmtT(t)} `, text);
    li.hidden = !filters.has(filter);
    const later = [...ol.children].find(x => Number(x.dataset.t) < t);
    ol.insertBefore(li, later || null);
    // the oldest go first, but not an alert still waiting for someone (while there are few)
    while (ol.childElementCount > 300) {
      const kids = [...ol.children].reverse();
      (kids.find(x => !x.matches("[data-alert]:not(.acked)")) || kids[0]).remove();
    }
    return li;
  }
  // an alert's acknowledgement: who and when (the line greyed), or the button to give it
  function drawAck(li, acked, error) {
    li.querySelector(".ack")?.remove();
    li.classList.toggle("acked", !!acked);
    li.append(el("span", { class: "ack" }, acked
      ? el("span", { class: "muted", text: ` · acknowledged by ${acked.by_name || acked.by} ${when(acked.at)}${acked.note ? " (" + acked.note + ")" : ""}` })
      : [" ", el("button", { type: "button", class: "secondary small", "aria-label": "Acknowledge this alert", onclick: () => ack(li) }, "Acknowledge"),
        error ? el("span", { class: "error", role: "alert", text: " " + error }) : null]));
    badge("alert-count", document.querySelectorAll("#events li[data-alert]:not(.acked)").length, "alerts to acknowledge");
  }
  async function ack(li) {
    try { drawAck(li, (await api(token, "POST", `/v1/ops/alerts/${li.dataset.alert}/ack`, {})).acked); }
    catch (e) { drawAck(li, null, e.message); }
  }
  // another operator's acknowledgements ("changed"): the alerts listed that nobody had acknowledged
  async function refreshAcks() {
    const open = document.querySelectorAll("#events li[data-alert]:not(.acked)");
    if (!open.length) return;
    const byId = new Map((await api(token, "GET", "/v1/ops/alerts?limit=300")).map(a => [String(a.id), a.acked]));
    open.forEach(li => { const a = byId.get(li.dataset.alert); if (a) drawAck(li, a); });
  }
  // an alert in the event stream, once (the stream may bring one that loadOpenAlerts listed)
  function showAlert(ev) {
    const had = document.querySelector(`#events li[data-alert="${CSS.escape(String(ev.id))}"]`);
    if (had) { if (ev.acked) drawAck(had, ev.acked); return; }
    let msg = ev.data.message;  // the engine names an associate by session: the name instead
    for (const sid of Object.keys(ev.names || {})) msg = msg.replaceAll(`staff session ${sid}`, staffLabel(ev, sid));
    const li = logEvent("alert", ev.t, `${ev.kind}: ${msg}`);
    li.dataset.alert = String(ev.id); drawAck(li, ev.acked);
  }
  // the stream starts 30 s of store time back: the alerts raised before (while no dashboard was
  // open) that nobody acknowledged are listed too, and counted on the tab until someone does
  async function loadOpenAlerts() {
    for (const a of await api(token, "GET", "/v1/ops/alerts?unacked=true&limit=100")) showAlert(a);
  }
  const name = pid => layout.products[pid]?.name || pid;
  const MAIL_ALERTS = new Set(["mail_refused", "mail_back"]);  // the service's, on the e-mail
  // an associate as the stream names them (``names``: their staff account's name), else by the
  // engine's session; shoppers are never in ``names``
  const staffLabel = (ev, key) => ev.names?.[key] ? `${ev.names[key]} (staff)` : null;
  function onEvent(channel, ev) {
    if (channel === "positions") return onPositions(ev);
    if (channel === "gate") { const g = ev.data; logEvent(g.kind === "entry" ? "entry" : "exit", ev.t, `${g.gate_id}${g.credential ? " · " + (staffLabel(ev, g.credential) || g.credential) : ""}${g.party_size > 1 ? " · party of " + g.party_size : ""}`); return; }
    if (channel === "decision") {
      const d = ev.data;
      if (d.stock && current === "health") loadStockMoves();
      // a stock move's items: − onto the plate (a restock), + off it (a removal)
      const by = d.session_id ? staffLabel(ev, d.session_id) || `staff session ${d.session_id}` : "store closed, no hand seen";
      for (const [pid, q] of d.items) d.stock
        ? logEvent(q < 0 ? "restock" : "removal", ev.t, `${Math.abs(q)} × ${name(pid)} · ${by}`)
        : logEvent(q > 0 ? "pick" : "put", ev.t, `${Math.abs(q)} × ${name(pid)} · ${d.session_id || "nobody"} (${Math.round(100 * d.confidence)}%)${d.needs_review ? " · to review" : ""}`);
      return;
    }
    if (channel === "alert") {
      showAlert(ev);
      if ((ev.kind === "store_closed" || ev.kind === "store_opened") && current === "health") loadMode();  // the engine applied it
      if (MAIL_ALERTS.has(ev.kind)) loadMail();  // the tab's badge too, whichever tab is shown
      return;
    }
    if (channel === "review") { logEvent("review", ev.t, `case ${ev.data.case_id}: ${ev.data.reasons.join("; ")}`); loadCases(); return; }
    if (channel === "health") { if (current === "health") drawHealth(ev.data); return; }
    if (channel === "changed") {
      loadCases(); refreshAcks(); loadPayments();  // loadCases brings the open case up to date
      if (current === "receipts") { loadReceipts(); receiptPane.reload(receiptPane.id, "refresh"); }
      if (current === "health") { loadStockMoves(); loadMail(); }  // an acknowledgement of its alert
    }
  }

  // ---- detail panes kept current ------------------------------------------------------------
  // A pane (the open receipt, the open review case) shows one thing as it was fetched, and
  // another desk, the shopper, the engine or the payment provider may change it meanwhile: an
  // operator acting on what they still saw got the service's 409. On every "changed" of the
  // stream (and the catch-up after a drop, which reloads what a "changed" would) the pane is
  // fetched again and, where it differs, redrawn keeping what the operator typed, the focus
  // and what they were looking at, with a marker listing what changed since they opened it
  // (a dispute's state among it, as the stream's own marker counts disputes by state) until
  // they open it again or say they saw it. Gone (a case whose evidence was purged), it says so;
  // an action refused because the thing changed says why and shows it as it stands.
  function pane(name, what) {
    const p = Object.assign({ name, id: null, data: null, seen: null, seenJson: null, shown: null, changes: [], lost: [],
      conflict: null, gone: null, seq: 0, busy: 0, again: false, opening: null,
      news: document.getElementById(name + "-news"), body: document.getElementById(name + "-body") }, what);
    p.reload = guarded(`update the open ${p.noun}`, (id, mode) => load(p, id, mode));
    return p;
  }
  // mode: "open" (the operator's own choice: what they see now is what later changes are told
  // against), "refresh" (redrawn only if it differs), "acted" (after their own action: its
  // result is the new baseline), "conflict" (their action was refused: said, and redrawn)
  async function load(p, id, mode) {
    if (mode !== "open") {
      if (id === null || p.id !== id) return;  // closed, or another one opened meanwhile
      if (p.opening !== null || p.busy) { p.again = true; return; }  // its own fetch follows: again after it
    }
    const seq = ++p.seq;
    if (mode === "open") p.opening = id;
    let got;
    try { got = await p.fetch(id); }
    catch (e) {
      if (seq !== p.seq) return;
      if (mode === "open") p.opening = null;  // what was shown before stays, kept current
      if (e.status === 404) return showGone(p, id);
      throw e;
    }
    if (seq !== p.seq) return;
    const json = JSON.stringify(got), facts = p.facts(got);
    if (mode === "open") Object.assign(p, { id, opening: null });
    if (mode === "open" || mode === "acted") Object.assign(p, { seen: facts, seenJson: json, changes: [], lost: [], conflict: null });
    if (json !== p.shown || mode === "open" || mode === "acted") {
      const kept = mode === "open" ? null : keep(p.body, mode === "acted");
      p.data = got; p.shown = json; p.gone = null;
      p.draw(got);
      if (kept) p.lost.push(...restore(p.body, kept));
      p.changes = diff(p.seen, facts, json !== p.seenJson);
      tag(p);
      drawNews(p, mode === "open" ? `${p.title(got)} shown.` : null);
      if (kept) settle(p, kept);
    } else if (mode === "conflict") drawNews(p);  // the same: only what is said changes
    if (p.again && p.id === id) { p.again = false; p.reload(id, "refresh"); }
  }
  // what differs between what the operator saw (facts: key, label, value, the element it is
  // shown in) and what stands now, in their words
  function diff(before, after, anyChange) {
    const was = new Map(before.map(f => [f.key, f])), out = [];
    for (const f of after) {
      const w = was.get(f.key); was.delete(f.key);
      if (!w) out.push({ anchor: f.anchor, tag: "new", text: `${f.label}: ${f.value} (new)` });
      else if (w.value !== f.value) out.push({ anchor: f.anchor, tag: "changed", text: `${f.label}: ${w.value} → ${f.value}` });
    }
    for (const w of was.values()) out.push({ text: `${w.label}: no longer there (was ${w.value})` });
    if (!out.length && anyChange) out.push({ text: "Some of its details were updated." });
    return out;
  }
  // the changed parts marked where they are shown, not only in the list at the top
  function tag(p) {
    for (const c of p.changes) {
      const at = c.anchor && p.body.querySelector(c.anchor);
      if (!at || at.classList.contains("changed")) continue;  // once (a receipt's state and total share a line)
      at.classList.add("changed");
      (at.matches(".lines li") ? at.firstElementChild : at).append(" ", el("span", { class: "changed-tag", text: c.tag }));
    }
  }
  function drawNews(p, said) {
    const had = p.news.contains(document.activeElement) ? document.activeElement.className : null;
    fill(p.news,
      p.gone ? el("p", { class: "gone", tabindex: "-1", text: p.gone }) : null,
      p.conflict ? el("p", { class: "error conflict", tabindex: "-1", text: `Not done: ${p.conflict}. ` + (p.changes.length
        ? `This ${p.noun} changed meanwhile (at another desk, by the shopper, the payment provider or the engine): it is shown below as it stands now, check it before acting again.`
        : `This ${p.noun} is shown below as it stands now.`) }) : null,
      p.changes.length ? el("div", { class: "changed-marker", tabindex: "-1", "data-changed": String(p.changes.length) },
        el("strong", { text: `Changed since you opened this ${p.noun}:` }),
        el("ul", {}, p.changes.map(c => el("li", { text: c.text }))),
        el("button", { type: "button", class: "secondary small", "aria-label": "Mark these changes as seen", onclick: () => seen(p) }, "Seen")) : null,
      p.lost.length ? el("p", { class: "muted lost", text: `Not sent, as you had typed it: ${p.lost.map(t => `“${t}”`).join(", ")}` }) : null,
      said ? el("span", { class: "sr-only", text: said }) : null);
    if (had) (p.news.querySelector(`[class="${CSS.escape(had)}"]`) || p.body.querySelector("h2"))?.focus({ preventScroll: true });
  }
  // the operator took the changes in: they are what later ones are told against
  function seen(p) {
    Object.assign(p, { seen: p.facts(p.data), seenJson: p.shown, changes: [], lost: [], conflict: null });
    p.body.querySelectorAll(".changed-tag").forEach(x => x.remove());
    p.body.querySelectorAll(".changed").forEach(x => x.classList.remove("changed"));
    drawNews(p);
    p.body.querySelector("h2")?.focus();
  }
  function showGone(p, id) {
    const lost = [...p.body.querySelectorAll("input[type=text][data-key], textarea[data-key]")].map(x => x.value.trim()).filter(Boolean);
    const focused = p.body.contains(document.activeElement) || p.news.contains(document.activeElement);
    Object.assign(p, { id: null, data: null, seen: null, shown: null, changes: [], conflict: null, lost: [...p.lost, ...lost], gone: p.goneText(id) });
    fill(p.body, el("p", { class: "muted", text: p.empty }));
    drawNews(p);
    if (focused) p.news.querySelector(".gone").focus();
  }
  // what the operator had in hand before a redraw: typed values, the focus (and caret), and
  // where on screen the part they were looking at was (elements are known by data-key)
  const keyOf = x => x?.dataset?.key || null;
  const byKey = (box, k) => k ? box.querySelector(`[data-key="${CSS.escape(k)}"]`) : null;
  function keep(body, acted) {
    const values = new Map(), active = body.contains(document.activeElement) ? document.activeElement : null;
    if (!acted) for (const x of body.querySelectorAll("input[data-key], textarea[data-key], select[data-key]"))
      values.set(x.dataset.key, { value: x.value, checked: x.checked, text: x.type === "text" || x.tagName === "TEXTAREA" });
    let sel = null;
    try { if (active && typeof active.selectionStart === "number") sel = [active.selectionStart, active.selectionEnd]; } catch { sel = null; }
    const anchor = (keyOf(active) && active) || [...body.querySelectorAll("[data-key]")].find(x => x.getBoundingClientRect().bottom > 0);
    return { values, focus: keyOf(active), hadFocus: !!active, sel, x: scrollX, y: scrollY,
      anchor: anchor ? { key: keyOf(anchor), top: anchor.getBoundingClientRect().top } : null };
  }
  // the values put back; what the operator typed into a field the new state no longer has is
  // returned (said in the news, not dropped without a word)
  function restore(body, kept) {
    const lost = [];
    for (const [k, v] of kept.values) {
      const x = byKey(body, k);
      if (!x) { if (v.text && v.value.trim()) lost.push(v.value.trim()); continue; }
      if (x.type === "radio" || x.type === "checkbox") x.checked = v.checked; else x.value = v.value;
    }
    return lost;
  }
  function settle(p, kept) {
    if (kept.hadFocus) {
      const same = byKey(p.body, kept.focus);
      // gone with the change (a decided dispute's buttons): to what says why
      (same || p.news.querySelector(".conflict, .changed-marker") || p.body.querySelector("h2"))?.focus({ preventScroll: true });
      if (same && kept.sel) try { same.setSelectionRange(...kept.sel); } catch { /* a field without a caret */ }
    }
    window.scrollTo(kept.x, kept.y);
    const a = kept.anchor && byKey(p.body, kept.anchor.key);
    if (a) window.scrollBy(0, a.getBoundingClientRect().top - kept.anchor.top);
  }
  // an action from the pane: on success its result is shown; refused because the thing
  // changed (409, or gone), said in plain words and shown as it stands now
  async function act(p, f, err, after) {
    const id = p.id;
    let refused = null;
    p.busy++;
    try { await f(); }
    catch (e) {
      if (e.status !== 409 && e.status !== 404 && e.code !== "no_such_line") { err.textContent = e.message; return; }
      refused = e;
    } finally { p.busy--; }
    if (p.id !== id) return;  // another one opened meanwhile
    if (refused && refused.status !== 404) p.conflict = refused.message;  // said with what changed (drawNews)
    await p.reload(id, refused ? "conflict" : "acted");
    if (refused) p.news.querySelector(".conflict")?.focus({ preventScroll: true });
    if (after) await after();
  }

  // ---- review queue -----------------------------------------------------------------------
  // A case is its stream and id together: recordings and simulations start their clocks at 0
  // each time they are served, so two streams can each have a case of one id (<plate>-<time>).
  // The pane knows a case by a key of both, and every read and decision names the stream.
  const caseKey = (stream, id) => JSON.stringify([stream, id]);
  const caseOf = key => { const [stream, id] = JSON.parse(key); return { stream, id }; };
  const caseUrl = (stream, id, rest = "") => `/v1/ops/reviews/${encodeURIComponent(id)}${rest}` + (stream ? "?stream=" + encodeURIComponent(stream) : "");
  const casePane = pane("case", { noun: "review case", empty: "Choose a case.",
    fetch: key => { const { stream, id } = caseOf(key); return api(token, "GET", caseUrl(stream, id)); }, draw: drawCase, facts: caseFacts,
    title: c => `Case ${c.case_id}`,
    goneText: key => { const { stream, id } = caseOf(key); return `Review case ${id} no longer exists (stream ${stream}): its evidence was purged (the event log is kept for the retention period only) or removed. Choose another case.`; } });
  async function loadCases() {
    const cases = await api(token, "GET", "/v1/ops/reviews");
    document.getElementById("review-count").textContent = cases.filter(c => c.state === "open").length;
    const ul = document.getElementById("cases");
    ul.replaceChildren(...cases.map(c => el("li", {}, el("button", { class: "row", "data-case": c.case_id, "data-stream": c.stream, "aria-current": caseKey(c.stream, c.case_id) === casePane.id ? "true" : null, onclick: () => showCase(c.stream, c.case_id) },
      el("strong", { text: `${c.kind} at ${fmtT(c.t)}` }), " ", el("span", { class: "state " + c.state, text: c.state }), el("br"),
      el("span", { class: "muted", text: c.reasons.join("; ") }), el("br"),
      el("span", { class: "muted case-stream", text: `stream ${c.stream}` })))));
    if (!cases.length) fill(ul, el("li", { class: "muted", text: "No review case yet." }));
    if (current === "review") casePane.reload(casePane.id, "refresh");
  }
  async function showCase(stream, id) {
    const key = caseKey(stream, id);
    document.querySelectorAll("#cases button").forEach(b => b.setAttribute("aria-current", caseKey(b.dataset.stream, b.dataset.case) === key));
    await load(casePane, key, "open");
  }
  const caseLabel = (c, sid) => `${sid}${c.people[sid]?.who ? " (" + c.people[sid].who + (c.people[sid].staff ? ", staff" : "") + ")" : ""}`;
  const caseItems = (c, its) => its.length ? its.map(([p, q]) => `${q} × ${c.products[p] || name(p)}`).join(", ") : "nothing";
  const decidedBy = v => v.decided_by_name || (v.decided_by ? "account " + v.decided_by.slice(0, 8) : "an operator");
  // what a case's pane says that can change while it is open: its verdict
  function caseFacts(c) {
    const v = c.verdict;
    const f = (key, label, value) => ({ key, label, value, anchor: v ? ".verdict" : "form" });
    return [f("verdict", "Verdict", v ? `decided by ${decidedBy(v)}: ${Object.entries(v.shares).map(([s, its]) => `${caseLabel(c, s)}: ${caseItems(c, its)}`).join("; ") || "nothing was taken"}` : "not decided yet"),
      ...(v ? [f("applied", "Its receipts", v.applied ? "corrected by the engine" : "waiting for the engine"), f("note", "Its note", v.note ? `“${v.note}”` : "none")] : [])];
  }
  function drawCase(c) {
    const label = sid => caseLabel(c, sid), items = its => caseItems(c, its);
    const decided = Object.entries(c.decided).map(([s, its]) => `${label(s)}: ${items(its)}`).join("; ") || "nobody charged";
    casePane.body.replaceChildren(
      el("h2", { tabindex: "-1", text: `Case ${c.case_id}` }),
      el("p", { class: "muted case-stream", text: `stream ${c.stream}` }),
      el("p", {}, el("strong", { text: c.event.kind }), ` of ${c.event.delta_g} g on ${c.event.plates.join(", ")} at ${fmtT(c.event.t_start)}–${fmtT(c.event.t_end)}`),
      el("p", {}, "Why: ", c.reasons.join("; ")),
      el("p", {}, "The engine charged: ", decided),
      el("h3", { text: "Plate weights around the event" }), weightPlot(c),
      el("h3", { text: "What it was: competing hypotheses" }),
      el("div", {}, c.hypotheses.map(h => el("div", { class: "hyp" }, el("span", { text: items(h.items) }), el("span", { class: "meter", role: "img", "aria-label": `${Math.round(100 * h.probability)} percent` }, el("span", { style: `width:${(100 * h.probability).toFixed(1)}%` })), el("span", { text: `${(100 * h.probability).toFixed(0)}%` })))),
      el("h3", { text: "Who: shoppers near the plate" }),
      el("div", {}, c.hands.map(h => el("div", { class: "hyp" }, el("span", { text: label(h.session_id) + (h.reach_m !== null ? ` · wrist ${Math.round(100 * h.reach_m)} cm from the plate` : "") }), el("span", { class: "meter", role: "img", "aria-label": `${Math.round(100 * h.probability)} percent` }, el("span", { style: `width:${(100 * h.probability).toFixed(1)}%` })), el("span", { text: `${(100 * h.probability).toFixed(0)}%` })))),
      el("h3", { text: "Replay: skeletons near the plate" }), replay(c),
      ...(c.clips.length ? [el("h3", { text: "Camera clips (blurred)" }), clips(c)] : []),
      c.verdict ? verdictOf(c, label, items) : decideForm(c, label, items));
  }
  // a decided case: the verdict, who decided it, when and why (what the next operator needs)
  function verdictOf(c, label, items) {
    const v = c.verdict;
    return el("div", { class: "verdict", role: "status", "data-key": "verdict" },
      el("p", {}, el("span", { class: "state applied", text: v.applied ? "decided and applied" : "decided (waiting for the engine)" }), " ",
        Object.entries(v.shares).map(([s, its]) => `${label(s)}: ${items(its)}`).join("; ") || "nothing was taken"),
      el("p", { class: "muted" }, `decided by ${decidedBy(v)} ${when(v.decided_at)}`, v.note ? ` · “${v.note}”` : null));
  }
  // the blurred clips `walkout evidence` cut around the case: fetched with the token (a <video>
  // cannot send it) and played from memory
  function clips(c) {
    const box = el("div", { class: "clips" });
    for (const clip of c.clips) {
      const video = el("video", { controls: "", muted: "", preload: "metadata", "aria-label": `Camera ${clip.camera}, around the event (blurred)` });
      box.append(el("figure", {}, video, el("figcaption", { text: `camera ${clip.camera}` })));
      fetch("/v1/ops/clips/" + encodeURIComponent(clip.name), { headers: { "Authorization": "Bearer " + token } })
        .then(r => r.ok ? r.blob() : Promise.reject(new Error(r.statusText)))
        .then(b => { video.src = URL.createObjectURL(b); })
        .catch(e => box.append(el("p", { class: "error", text: `clip ${clip.name}: ${e.message}` })));
    }
    return box;
  }
  function decideForm(c, label, items) {
    const sessions = c.sessions;
    const whoSet = el("fieldset", { class: "choice" }, el("legend", { text: "Who took it" }),
      sessions.map((s, i) => el("label", {}, el("input", { type: "radio", name: "who", value: s, "data-key": "who:" + s, checked: Object.keys(c.decided).length ? Object.keys(c.decided)[0] === s : i === 0 }), " ", label(s))));
    const whatSet = el("fieldset", { class: "choice" }, el("legend", { text: "What it was" }),
      c.hypotheses.map((h, i) => el("label", {}, el("input", { type: "radio", name: "what", value: i, "data-key": "what:" + i, checked: i === 0 }), " ", items(h.items), ` (${(100 * h.probability).toFixed(0)}%)`)));
    const err = el("p", { class: "error", role: "alert" });
    const note = el("input", { id: "decide-note", type: "text", maxlength: 1000, autocomplete: "off", "data-key": "note" });
    const send = shares => act(casePane, () => api(token, "POST", caseUrl(c.stream, c.case_id, "/decision"), { shares, note: note.value.trim() || null }), err, loadCases);
    const form = el("form", { "aria-label": "Decide this case", onsubmit: e => {
      e.preventDefault();
      const who = form.querySelector("input[name=who]:checked")?.value, what = form.querySelector("input[name=what]:checked")?.value;
      if (!who || what === undefined) { err.textContent = "Choose who and what."; return; }
      send({ [who]: c.hypotheses[+what].items });
    } }, el("h3", { text: "Decide" }), whoSet, whatSet,
      el("label", { for: "decide-note", text: "Note (why)" }), note,
      el("button", { type: "submit", id: "decide-charge", "data-key": "charge" }, "Charge the chosen shopper"), " ",
      el("button", { type: "button", class: "secondary", id: "decide-confirm", "data-key": "confirm", onclick: () => send(c.decided) }, "Confirm the engine's decision"), " ",
      el("button", { type: "button", class: "danger", id: "decide-nothing", "data-key": "nothing", onclick: () => send({}) }, "Nothing was taken"), err);
    return form;
  }
  function weightPlot(c) {
    const W = 520, H = 180, m = 34, w = c.weights;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": "Weight of each plate over time, the event shaded" });
    if (!w) { root.append(svg("text", { x: 20, y: 40 }, "no weight trace")); return root; }
    const t0 = w.t[0], t1 = w.t[w.t.length - 1];
    const vals = w.grams.flat().filter(v => v !== null);
    let g0 = Math.min(...vals), g1 = Math.max(...vals); if (g1 - g0 < 10) { g0 -= 5; g1 += 5; }
    const X = t => m + (W - m - 8) * (t - t0) / Math.max(1e-6, t1 - t0), Yg = g => H - 22 - (H - 32) * (g - g0) / (g1 - g0);
    root.append(svg("rect", { x: X(c.event.t_start), y: 6, width: Math.max(2, X(c.event.t_end) - X(c.event.t_start)), height: H - 28, fill: "#fde7c4" }));
    w.plates.forEach((p, j) => {
      const pts = w.t.map((t, i) => w.grams[i][j] === null ? null : `${X(t).toFixed(1)},${Yg(w.grams[i][j]).toFixed(1)}`).filter(Boolean).join(" ");
      root.append(svg("polyline", { points: pts, fill: "none", stroke: COLORS[j % COLORS.length], "stroke-width": 1.6 }, svg("title", {}, p)));
      root.append(svg("text", { x: W - 10, y: 14 + 13 * j, "text-anchor": "end", "font-size": 11, fill: COLORS[j % COLORS.length] }, p));
    });
    root.append(svg("text", { x: 2, y: Yg(g1) + 4, "font-size": 10 }, `${Math.round(g1)} g`), svg("text", { x: 2, y: Yg(g0), "font-size": 10 }, `${Math.round(g0)} g`),
      svg("text", { x: m, y: H - 6, "font-size": 10 }, fmtT(t0)), svg("text", { x: W - 8, y: H - 6, "font-size": 10, "text-anchor": "end" }, fmtT(t1)));
    return root;
  }
  const BONES = [[5, 7], [7, 9], [6, 8], [8, 10], [5, 6], [5, 11], [6, 12], [11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [0, 5], [0, 6]];
  function replay(c) {
    // seen from the aisle: horizontal = along the shelf, vertical = height
    const W = 360, H = 220;
    const boxes = Object.values(c.plate_boxes);
    const cx = boxes.length ? (boxes[0][0][0] + boxes[0][1][0]) / 2 : 0, cy = boxes.length ? (boxes[0][0][1] + boxes[0][1][1]) / 2 : 0;
    const gond = layout.gondolas.find(g => c.event.plates[0]?.startsWith(g.id)) || layout.gondolas[0];
    const f = gond.front, ax = [-f[1], f[0]];
    const U = (x, y) => (x - cx) * ax[0] + (y - cy) * ax[1];
    const sx = u => W / 2 + u * 90, sz = z => H - 10 - z * 90;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", id: "replay", role: "img", "aria-label": "Animated replay of the skeletons of the shoppers near the plate" });
    for (const [lo, hi] of boxes) {
      const us = [U(lo[0], lo[1]), U(hi[0], hi[1]), U(lo[0], hi[1]), U(hi[0], lo[1])];
      root.append(svg("rect", { x: sx(Math.min(...us)), y: sz(hi[2]), width: (Math.max(...us) - Math.min(...us)) * 90, height: (hi[2] - lo[2]) * 90, fill: "#fde7c4", stroke: "#9a5b00" }));
    }
    const layer = svg("g"); root.append(layer);
    const clock = svg("text", { x: 8, y: 16, "font-size": 12, class: "replay-clock" }); root.append(clock);
    const sessions = Object.keys(c.skeletons);
    const times = [...new Set(sessions.flatMap(s => c.skeletons[s].map(fr => fr[0])))].sort((a, b) => a - b);
    let k = 0, playing = true;
    function draw() {
      if (!times.length) { clock.textContent = "no skeleton seen"; return; }
      const t = times[k % times.length]; layer.replaceChildren(); clock.textContent = fmtT(t, 1) + (t >= c.event.t_start && t <= c.event.t_end ? " · event" : "");
      sessions.forEach((s, i) => {
        const fr = c.skeletons[s].reduce((best, x) => Math.abs(x[0] - t) < Math.abs((best?.[0] ?? 1e9) - t) ? x : best, null);
        if (!fr || Math.abs(fr[0] - t) > 0.3) return;
        const J = fr[1], col = COLORS[i % COLORS.length];
        for (const [a, b] of BONES) if (J[a][0] !== null && J[b][0] !== null)
          layer.append(svg("line", { x1: sx(U(J[a][0], J[a][1])), y1: sz(J[a][2]), x2: sx(U(J[b][0], J[b][1])), y2: sz(J[b][2]), stroke: col, "stroke-width": 2.5, "stroke-linecap": "round" }));
        for (const w of [9, 10]) if (J[w][0] !== null) layer.append(svg("circle", { cx: sx(U(J[w][0], J[w][1])), cy: sz(J[w][2]), r: 4, fill: col }));
        if (J[0][0] !== null) layer.append(svg("text", { x: sx(U(J[0][0], J[0][1])), y: sz(J[0][2]) - 10, "font-size": 11, "text-anchor": "middle", fill: col }, s));
      });
    }
    draw();
    const timer = setInterval(() => { if (!root.isConnected) { clearInterval(timer); return; } if (playing) { k++; draw(); } }, 100);
    const btn = el("button", { type: "button", class: "secondary", "aria-pressed": "false", onclick: () => { playing = !playing; btn.textContent = playing ? "Pause replay" : "Play replay"; btn.setAttribute("aria-pressed", String(!playing)); } }, "Pause replay");
    return el("div", {}, root, btn);
  }

  // ---- receipts and disputes --------------------------------------------------------------
  // what a dispute's state means to the operator; "corrected": a review verdict took the
  // contested units off the receipt (refunding them), so there is nothing left to decide
  const DISPUTE_STATES = { refunding: "refund pending", corrected: "corrected by review" };
  const disputeState = d => el("span", { class: "state " + d.state, "data-state": d.state, text: DISPUTE_STATES[d.state] || d.state });
  const disputed = d => d.state === "corrected" ? d.product_id : `${d.product_id} × ${d.quantity}`;  // a corrected one has 0 left
  const flagBadge = d => d.shopper?.flagged ? el("span", { class: "badge flag", text: "flagged", title: `${d.shopper.rejected_disputes} disputes rejected in ${d.shopper.window_days} days` }) : null;
  document.getElementById("receipt-search").addEventListener("submit", e => { e.preventDefault(); loadReceipts(); });
  // the newest RECEIPTS_SHOWN (one more is asked for, to know whether the list is cut)
  const RECEIPTS_SHOWN = 50;
  async function loadReceipts() {
    const q = document.getElementById("rq").value.trim();
    const got = await api(token, "GET", `/v1/ops/receipts?limit=${RECEIPTS_SHOWN + 1}&q=` + encodeURIComponent(q));
    const rs = got.slice(0, RECEIPTS_SHOWN);
    fill(document.getElementById("receipts"), rs.map(r => el("li", {}, el("button", { class: "row", "data-receipt": r.receipt_id, onclick: () => showReceipt(r.receipt_id) },
      el("strong", { text: `${r.total} ${r.currency}` }), ` · ${r.who} · ${when(r.issued_at)} `, el("span", { class: "state " + r.state, text: r.state }),
      r.open_disputes ? el("span", { class: "badge", text: r.open_disputes, "aria-label": "open disputes" }) : null))),
      // said, not an empty list (did it search?) or a cut one that looks whole
      !rs.length ? el("li", { class: "muted", text: q ? `No receipt matches “${q}”.` : "No receipt yet." }) : null,
      got.length > RECEIPTS_SHOWN ? el("li", { class: "muted", text: `These are only the newest ${RECEIPTS_SHOWN}: search by receipt id, e-mail address or product to find an older one.` }) : null);
    const ds = await api(token, "GET", "/v1/disputes");
    document.getElementById("disputes").replaceChildren(...ds.reverse().map(d => el("li", { "data-dispute": d.dispute_id }, el("button", { class: "row", onclick: () => showReceipt(d.receipt_id) },
      disputed(d), " ", disputeState(d), " ", flagBadge(d)))));
    if (!ds.length) fill(document.getElementById("disputes"), el("li", { class: "muted", text: "No dispute yet." }));
  }
  const receiptPane = pane("receipt", { noun: "receipt", empty: "Choose a receipt or a dispute.",
    fetch: id => api(token, "GET", "/v1/ops/receipts/" + encodeURIComponent(id)), draw: drawReceipt, facts: receiptFacts,
    title: r => `Receipt ${r.receipt_id.slice(0, 8)}`,
    goneText: id => `Receipt ${id.slice(0, 8)} no longer exists. Choose another receipt.` });
  async function showReceipt(id, focus) {
    await load(receiptPane, id, "open");
    if (focus) receiptPane.body.querySelector("h2")?.focus();
  }
  // what a receipt's pane says that can change while it is open: its state and total, each
  // line, each dispute's state (a decision moves one from a state to another, as the stream's
  // marker counts them), each money movement and bank chargeback
  function receiptFacts(r) {
    const f = (key, label, value, anchor) => ({ key, label, value, anchor });
    const product = pid => r.lines.find(l => l.product_id === pid)?.name || layout.products[pid]?.name || pid;
    const sel = (attr, v) => `[${attr}="${CSS.escape(String(v))}"]`;
    return [
      f("state", "State", (r.state || "unknown").replaceAll("_", " ") + (r.under_review ? ", under review" : ""), ".receipt-state"),
      f("total", "Total", `${r.total} ${r.currency}`, ".receipt-state"),
      ...r.lines.map(l => f("line:" + l.product_id, l.name, `${l.quantity} for ${l.amount}`, "li" + sel("data-product", l.product_id))),
      ...r.disputes.map(d => f("dispute:" + d.dispute_id, `Dispute of ${product(d.product_id)}`,
        `${DISPUTE_STATES[d.state] || d.state}, ${d.quantity} unit${d.quantity === 1 ? "" : "s"}${d.refund ? `, ${d.refund.amount} ${d.refund.currency} back` : ""}`, "li" + sel("data-dispute", d.dispute_id))),
      ...r.charges.map((c, i) => f("charge:" + i, `${(CHARGE_KINDS[c.kind] || c.kind).replace(/^./, x => x.toUpperCase())} of ${c.amount}`, c.status.replaceAll("_", " "), "li" + sel("data-charge", i))),
      ...r.chargebacks.map(cb => f("chargeback:" + cb.chargeback_id, `Bank chargeback of ${cb.amount} ${cb.currency}`, CHARGEBACK_STATES[cb.status] || cb.status.replaceAll("_", " "), "li" + sel("data-chargeback", cb.chargeback_id))),
    ];
  }
  function drawReceipt(r) {
    const id = r.receipt_id, err = el("p", { class: "error", role: "alert" });
    // why: kept with a refund or a dispute's decision (a fixed one when left empty)
    const note = el("input", { id: "receipt-note", type: "text", maxlength: 1000, autocomplete: "off", "data-key": "note" });
    const why = fallback => note.value.trim() || fallback;
    const run = f => act(receiptPane, f, err, loadReceipts);
    const decide = (d, decision, fallback) => run(() => api(token, "POST", `/v1/disputes/${d.dispute_id}/decision`, { decision, note: why(fallback) }));
    const lineName = pid => r.lines.find(l => l.product_id === pid)?.name || name(pid);
    function refund(l, qty) {
      const q = Number(qty.value);
      if (!Number.isInteger(q) || q < 1 || q > l.quantity) { err.textContent = `Refund from 1 to ${l.quantity} of ${l.name}.`; qty.focus(); return; }
      run(() => api(token, "POST", `/v1/ops/receipts/${encodeURIComponent(id)}/refund`, { product_id: l.product_id, quantity: q, note: why("refunded at the desk") }));
    }
    fill(receiptPane.body, el("h2", { tabindex: "-1", text: `Receipt ${id.slice(0, 8)}` }),
      el("p", { class: "receipt-state", "data-key": "state" }, el("span", { class: "state " + r.state, text: r.state }), r.under_review ? el("span", { class: "state under_review", text: "under review" }) : null, ` · ${r.total} ${r.currency}`),
      el("ul", { class: "lines" }, r.lines.map(l => {
        const qty = el("input", { type: "number", class: "qty", min: 1, max: l.quantity, value: 1, inputmode: "numeric", "data-key": "qty:" + l.product_id, "aria-label": `How many ${l.name} to refund` });
        return el("li", { "data-product": l.product_id, "data-key": "line:" + l.product_id }, el("span", {}, `${l.quantity} × ${l.name}`, el("br"),
          el("span", { class: "muted", text: l.evidence.map(e => e.confidence !== undefined ? `${e.event_id}: ${Math.round(100 * e.confidence)}%${e.needs_review ? " (reviewed case)" : ""}` : e.event_id).join(" · ") })),
          el("span", { class: "refund" }, l.amount, " ", qty, el("button", { type: "button", class: "secondary", "data-key": "refund:" + l.product_id, "aria-label": `Refund ${l.name}`, onclick: () => refund(l, qty) }, "Refund")));
      })),
      el("label", { for: "receipt-note", text: "Why (kept with a refund or a dispute's decision)" }), note,
      WO.taxTable(r),
      el("h3", { text: "Disputes" }), el("ul", { class: "list" }, r.disputes.map(d => el("li", { "data-dispute": d.dispute_id, "data-key": "dispute:" + d.dispute_id }, disputed(d), `: ${d.reason} `, disputeState(d), " ", flagBadge(d),
        d.state === "open" ? el("span", {}, " ", el("button", { type: "button", "data-key": "dispute-refund:" + d.dispute_id, "aria-label": `Refund the dispute of ${lineName(d.product_id)}`, onclick: () => decide(d, "refund", "agreed") }, "Refund"), " ",
          el("button", { type: "button", class: "secondary", "data-key": "dispute-reject:" + d.dispute_id, "aria-label": `Reject the dispute of ${lineName(d.product_id)}`, onclick: () => decide(d, "reject", "evidence is clear") }, "Reject"))
        // the provider did not confirm the refund: it is still owed, and deciding again retries it
        : d.state === "refunding" ? el("span", {}, " ", el("button", { type: "button", "data-key": "dispute-retry:" + d.dispute_id, onclick: () => decide(d, "refund", "retried") }, "Retry refund"))
        : null))),
      el("h3", { text: "Money" }), el("ul", { class: "list" }, r.charges.map((c, i) => el("li", { "data-kind": c.kind, "data-charge": String(i), "data-key": "charge:" + i, "data-outside": c.outside ? "true" : null }, `${c.kind} ${c.amount} · ${c.status}`,
        // a refund made in the provider's dashboard: nobody decided it here, and it caps walkout's own
        c.outside ? [" ", el("span", { class: "state outside", text: "made outside walkout" }), el("br"), el("span", { class: "muted", text: `${when(c.at)} · ${c.note}` })] : null))),
      r.chargebacks.length ? [el("h3", { text: "Bank chargebacks" }), el("ul", { class: "list" }, r.chargebacks.map(cb => el("li", { "data-chargeback": cb.chargeback_id, "data-key": "chargeback:" + cb.chargeback_id },
        `${cb.amount} ${cb.currency} · ${reasonText(cb.reason)} `, chargebackState(cb), cb.respond && cb.evidence_due_by ? [" · answer by ", dueDate(cb.evidence_due_by)] : null,
        cb.fee !== null ? el("span", { class: "muted", text: ` · Stripe's fee ${feeText(cb)}` }) : null)))] : null,
      err);
  }

  // ---- what the payment provider reported: bank chargebacks, events staff must act on ------
  // a chargeback's status in the operator's words; inquiries (warning_*) move no money
  const CHARGEBACK_STATES = { needs_response: "needs response", under_review: "bank deciding", warning_needs_response: "inquiry: needs response", warning_under_review: "inquiry: bank deciding", warning_closed: "inquiry closed", won: "won", lost: "lost" };
  const chargebackState = cb => el("span", { class: "state " + (cb.status === "lost" ? "overdue" : cb.respond ? "soon" : cb.status === "won" ? "applied" : "open"), "data-status": cb.status, text: CHARGEBACK_STATES[cb.status] || cb.status.replaceAll("_", " ") });
  const reasonText = r => r.replaceAll("_", " ");
  // the evidence due date: the date itself, and how long is left (past it, the money is lost)
  function dueDate(iso) {
    const left = (instant(iso) - Date.now()) / 3600000;
    const [cls, text] = left < 0 ? ["overdue", "overdue"] : left < 48 ? ["soon", left < 1 ? "due within the hour" : `in ${Math.floor(left)} h`]
      : [left < 72 ? "soon" : "later", `in ${Math.floor(left / 24)} days`];
    return el("span", { class: "due-date" }, el("strong", { text: instant(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) }), " ", el("span", { class: "state " + cls, "data-due": cls, text }));
  }
  const EVENT_LABELS = { "charge.dispute.created": "chargeback opened", "charge.dispute.updated": "chargeback updated", "charge.dispute.funds_withdrawn": "chargeback: funds withdrawn",
    "charge.dispute.funds_reinstated": "chargeback: funds reinstated", "charge.dispute.closed": "chargeback closed", "payment_intent.canceled": "hold gone", "charge.expired": "hold gone",
    "charge.refunded": "refunded outside walkout" };
  const openReceipt = (rid, vid) => rid ? el("button", { type: "button", class: "secondary small", "data-receipt": rid, onclick: () => showReceipt(rid, true) }, `Receipt ${rid.slice(0, 8)}`)
    : vid ? el("span", { class: "muted", text: `visit ${vid.slice(0, 8)} (no receipt yet)` }) : null;
  // a badge on the tab: its number, and what it counts for screen readers (and as a tooltip)
  function badge(id, n, what) {
    const b = document.getElementById(id); b.hidden = !n;
    fill(b, String(n), el("span", { class: "sr-only", text: ` ${what}` })); b.title = `${n} ${what}`;
  }
  // Stripe's fee for a chargeback (net of any it gave back on a win): the store's cost, won or lost
  const feeText = cb => `${cb.fee} ${cb.fee_currency}`;
  let payments = null;
  const showAcked = document.getElementById("show-acked");
  showAcked.addEventListener("change", () => loadPayments());
  async function loadPayments() {
    payments = await api(token, "GET", "/v1/ops/payment-attention" + (showAcked.checked ? "?include_acknowledged=true" : ""));
    badge("chargeback-count", payments.counts.open_chargebacks, "open chargebacks");
    badge("attention-count", payments.counts.attention_events, `payment events to check (last ${payments.days} days)`);
    if (current === "receipts") drawPayments();
  }
  // staff handled an event: it leaves the list (for every open dashboard: the stream's "changed"),
  // and the focus goes to the next event's button rather than to nowhere
  async function acknowledgePayment(li) {
    const near = li.nextElementSibling?.dataset.event || li.previousElementSibling?.dataset.event;
    try {
      await api(token, "POST", `/v1/ops/payment-events/${encodeURIComponent(li.dataset.event)}/acknowledge`, {});
      await loadPayments();
      const list = document.getElementById("payment-events");
      (near && list.querySelector(`li[data-event="${CSS.escape(near)}"] button[data-ack]`) || list).focus();
    } catch (e) {
      li.querySelector(".ack-error")?.remove();
      li.append(el("span", { class: "error ack-error", role: "alert", text: " Not acknowledged: " + e.message }));
    }
  }
  const eventLabel = e => EVENT_LABELS[e.type] || e.type;
  function eventAck(e) {
    const a = e.acknowledged;
    if (a) return el("span", { class: "state applied", "data-acknowledged": a.by, text: `acknowledged by ${a.by_name || "account " + a.by.slice(0, 8)} ${when(a.at)}${a.note ? " · " + a.note : ""}` });
    return el("button", { type: "button", class: "secondary small", "data-ack": e.event_id, onclick: ev => acknowledgePayment(ev.currentTarget.closest("li")),
      "aria-label": `Acknowledge ${eventLabel(e)} of ${when(e.received_at)}${e.object_id ? ` (${e.object_id})` : ""}` }, "Acknowledge");
  }
  function drawPayments() {
    const p = payments; if (!p) return;
    document.getElementById("payments").hidden = !(p.reports || p.open_chargebacks.length || p.attention_events.length || p.owed_balances.length || p.unconfirmed_charges.length);
    const cols = ["Answer by", "Amount", "Stripe's fee", "Reason", "Status", "Receipt", "Stripe dispute"];
    fill(document.getElementById("chargebacks"),
      el("caption", { class: "sr-only", text: "Open bank chargebacks, the most urgent first" }),
      el("thead", {}, el("tr", {}, cols.map((h, i) => el("th", { scope: "col", class: i === 1 || i === 2 ? "num" : null, text: h })))),
      el("tbody", {}, p.open_chargebacks.length ? p.open_chargebacks.map(cb => el("tr", { "data-chargeback": cb.chargeback_id },
        el("td", { class: "due" }, cb.respond && cb.evidence_due_by ? dueDate(cb.evidence_due_by) : el("span", { class: "muted", text: cb.respond ? "no date given" : "evidence sent, nothing to do" })),
        el("td", { class: "num", text: `${cb.amount} ${cb.currency}` }),
        el("td", { class: "num", "data-fee": cb.fee ?? "" }, cb.fee === null ? el("span", { class: "muted", title: "not reported yet", text: "–" }) : feeText(cb)),
        el("td", { text: reasonText(cb.reason) }), el("td", {}, chargebackState(cb)),
        el("td", {}, openReceipt(cb.receipt_id, cb.visit_id)), el("td", { class: "muted", text: cb.chargeback_id })))
        : [el("tr", {}, el("td", { colspan: cols.length, class: "muted", text: "No open chargeback." }))]));
    const acked = p.counts.acknowledged_events;
    document.getElementById("attention-days").textContent = `last ${p.days} days: ${p.counts.attention_events}${acked ? `, ${acked} acknowledged` : ""}`;
    // redrawn on every "changed" (another desk's acknowledgement too): the focus stays where it was
    const list = document.getElementById("payment-events"), had = list.contains(document.activeElement) ? document.activeElement : null;
    const hadEvent = had?.closest("li")?.dataset.event, hadWhich = had?.dataset.ack ? "[data-ack]" : "[data-receipt]";
    fill(list, p.attention_events.length ? p.attention_events.map(e => el("li", { "data-event": e.event_id, "data-type": e.type, class: e.acknowledged ? "acked" : null },
      el("strong", { text: when(e.received_at) }), " ", el("span", { class: "state open", text: eventLabel(e) }), " ", e.detail, " ", openReceipt(e.receipt_id, e.visit_id), " ", eventAck(e)))
      : [el("li", { class: "muted", text: `Nothing to check in the last ${p.days} days.` })]);
    if (had) (hadEvent && list.querySelector(`li[data-event="${CSS.escape(hadEvent)}"] button${hadWhich}`) || list).focus();
    drawOwed(p.owed_balances);
    drawUnconfirmed(p.unconfirmed_charges);
  }
  // provider calls still unanswered: retried by the service with their keys, shown so staff know
  const CHARGE_KINDS = { preauth: "pre-authorisation", capture: "capture", release: "release of the hold", refund: "refund", balance: "balance charge" };
  function drawUnconfirmed(charges) {
    fill(document.getElementById("unconfirmed-charges"), charges.length ? charges.map(c => el("li", { "data-key": c.key },
      el("strong", { text: `${CHARGE_KINDS[c.kind] || c.kind} ${c.amount} ${c.currency}` }), " ",
      el("span", { class: "muted", text: `tried since ${when(c.since)}${c.error ? " · " + c.error : ""}` }), " ",
      openReceipt(c.receipt_id, c.visit_id)))
      : [el("li", { class: "muted", text: "Every payment is confirmed." })]);
  }
  // part of a receipt the capture could not take and the card did not pay: charge the saved card again, or give it up
  function drawOwed(owed) {
    const list = document.getElementById("owed-balances");
    fill(list, owed.length ? owed.map(b => el("li", { "data-visit": b.visit_id },
      el("strong", { text: `${b.amount} ${b.currency}` }), " ", el("span", { class: "muted", text: `left ${when(b.exited_at)}` }),
      b.last_attempt ? el("span", { class: "muted", text: ` · last try ${b.last_attempt.status}${b.last_attempt.error ? ": " + b.last_attempt.error : ""}` }) : "",
      " ", openReceipt(b.receipt_id, b.visit_id), " ",
      el("button", { type: "button", class: "secondary small", "data-collect": b.visit_id, "aria-label": `Charge the card again for ${b.amount} ${b.currency} owed`, onclick: ev => settleOwed(ev.currentTarget, "collect") }, "Charge again"), " ",
      el("button", { type: "button", class: "secondary small", "data-writeoff": b.visit_id, "aria-label": `Write off ${b.amount} ${b.currency} owed`, onclick: ev => settleOwed(ev.currentTarget, "write-off") }, "Write off")))
      : [el("li", { class: "muted", text: "Nothing owed." })]);
  }
  async function settleOwed(button, how) {
    const li = button.closest("li"), said = document.getElementById("owed-note");
    const not = `Not ${how === "collect" ? "charged" : "written off"}: `;
    try {
      await api(token, "POST", `/v1/ops/visits/${encodeURIComponent(li.dataset.visit)}/balance/${how}`, {});
      said.textContent = "";
      await loadPayments();
      document.getElementById("owed-balances").focus();
    } catch (e) {
      if (e.status === 409 || e.status === 404) {
        // the balance changed meanwhile (settled at another desk, a charge of it in flight):
        // said, and the list shown as it stands now
        said.textContent = `${not}${e.message}. The balances owed are shown as they stand now.`;
        await loadPayments();
        return;
      }
      li.querySelector(".ack-error")?.remove();
      li.append(el("span", { class: "error ack-error", role: "alert", text: not + e.message }));
    }
  }

  // ---- health -----------------------------------------------------------------------------
  async function drawHealth(h) {
    h = h || await api(token, "GET", "/v1/ops/health");
    const root = document.getElementById("health-map"); drawFloor(root, { plates: true });
    const fill = { alive: "#6cc070", noisy: "#f0b429", dead: "#b3261e" };
    const marks = {}; for (const it of h.inventory) for (const p of it.plates) { if (it.low) marks[p] = marks[p] || "low"; if (it.misplaced) marks[p] = "misplaced"; }
    for (const [pid, st] of Object.entries(h.plates)) {
      const b = layout.plates[pid]?.box; if (!b) continue;
      root.append(svg("rect", { x: b[0], y: Y(b[3]), width: b[2] - b[0], height: b[3] - b[1], fill: fill[st], "fill-opacity": 0.55, stroke: marks[pid] === "misplaced" ? "#6a3fb5" : marks[pid] === "low" ? "#9a5b00" : "#44484f", "stroke-width": marks[pid] ? 0.08 : 0.01, "data-plate": pid, "data-state": st }, svg("title", {}, `${pid}: ${st}${marks[pid] ? ", " + marks[pid] : ""}`)));
    }
    document.getElementById("health-t").textContent = h.t === null ? "" : "at " + fmtT(h.t);
    document.getElementById("cameras").replaceChildren(...Object.entries(h.cameras).map(([c, st]) => el("li", { class: st, text: `${c}: ${st}` })));
    const flagged = h.inventory.filter(i => i.low || i.misplaced);
    document.getElementById("inventory").replaceChildren(...(flagged.length ? flagged : [null]).map(i => i === null ? el("li", { class: "muted", text: "no plate is low on stock or holds a misplaced item" }) :
      el("li", {}, `${i.plates.join("+")}: ${i.count} × ${name(i.product)} `, el("span", { class: "state " + (i.misplaced ? "open" : "in_review"), text: i.misplaced ? "misplaced" : i.count === 0 ? "out of stock" : "low stock" }))));
    drawInputs(h.inputs || {});
    if (h.mail) drawMail(h.mail);  // the engine's own snapshots (the stream's) carry none
  }

  // ---- receipt e-mail: a mail server refusing the store's sender or login stops every receipt
  // e-mail until the settings are fixed; the alert says so once, in the event stream, and this
  // says it for as long as it lasts (an acknowledgement does not end it), with the tab's badge
  async function loadMail() { drawMail((await api(token, "GET", "/v1/ops/health")).mail); }
  function drawMail(m) {
    const f = m.fault, box = document.getElementById("mail-state");
    badge("mail-count", f ? 1 : 0, "receipt e-mail fault: receipts are not going out");
    if (!f) return fill(box, el("p", { id: "mail-ok", class: "muted", text: m.smtp ? "Receipts are e-mailed: the mail server takes the store's e-mail."
      : "No mail server is set: receipts are not e-mailed (the app and the kiosk show them)." }));
    const acked = f.acked ? `The alert was acknowledged by ${f.acked.by_name || f.acked.by} ${when(f.acked.at)}; it` : "It";
    fill(box, el("div", { id: "mail-fault", class: "mail-fault", "data-alert": String(f.alert_id) },
      el("p", {}, el("span", { class: "state overdue", text: "receipts not going out" }), ` since ${when(f.since)} · `,
        el("strong", { id: "mail-waiting", "data-waiting": String(f.waiting), text: `${f.waiting} e-mail${f.waiting === 1 ? "" : "s"} waiting` })),
      el("p", { class: "mail-message", text: f.message.charAt(0).toUpperCase() + f.message.slice(1) + "." }),
      el("p", { class: "muted", text: `${acked} stands until an e-mail goes out again: none is given up meanwhile.` })));
  }

  // what the source did with the sensor data: counters of a sensor network, notes of a recording
  const INPUT_PROBLEMS = { duplicates: "duplicate messages dropped", late: "late messages (behind the released time)", missing: "announced messages that never came", reconnects: "reconnections to the broker" };
  function drawInputs(inp) {
    const problems = [];
    for (const [k, label] of Object.entries(INPUT_PROBLEMS)) if (inp[k]) problems.push(`${inp[k]} ${label}`);
    for (const [reason, n] of Object.entries(inp.rejected || {})) problems.push(`${n} rejected: ${reason.replaceAll("_", " ")}`);
    for (const note of inp.notes || []) problems.push(note);
    const items = problems.map(text => el("li", { class: "input-problem", text }));
    if ("received" in inp) items.unshift(el("li", { text: `${inp.accepted} of ${inp.received} messages accepted` }));
    if (!problems.length) items.push(el("li", { class: "muted", text: "no duplicated, late, out-of-order or malformed sensor data" }));
    document.getElementById("inputs").replaceChildren(...items);
  }

  // ---- store mode (closed for restocking) and the engine's stock moves ---------------------
  // shoppers (and unbound people) the live map shows inside: while any is, a closed store's
  // weight changes are judged as an open store's (reviewed, not booked as stock)
  function shoppersOnMap() { let n = 0; for (const o of people.values()) if (!o.left && !o.staff) n++; return n; }
  let mode = null, confirmBox = null;
  async function loadMode() {
    try { mode = await api(token, "GET", "/v1/store-mode"); drawMode(); }
    catch (e) { fill(document.getElementById("store-mode"), el("p", { class: "error", role: "alert", text: e.message })); }
  }
  function drawMode(error) {
    const closed = mode.closed;
    if (closed) confirmBox = null;  // closed meanwhile (another desk): nothing left to confirm
    const by = mode.set_by_name || (mode.set_by ? "account " + mode.set_by.slice(0, 8) : null);
    fill(document.getElementById("store-mode"),
      el("p", { id: "mode-status", "data-mode": closed ? "closed" : "open" },
        el("span", { class: "state " + (closed ? "mode-closed" : "mode-open"), text: closed ? "closed for restocking" : "open" }),
        mode.set_at ? ` since ${when(mode.set_at)}` : null, by ? `, set by ${by}` : null, mode.note ? ` · “${mode.note}”` : null),
      mode.set_at ? el("p", { class: "muted", text: mode.applied_t === null ? "The engine applies it at the start of its next chunk."
        : `The engine applied it at store time ${fmtT(mode.applied_t)}.` }) : null,
      closed ? el("button", { type: "button", id: "mode-open", onclick: () => setMode(false) }, "Open the store again")
        : confirmBox || el("button", { type: "button", id: "mode-close", class: "secondary", onclick: askClose }, "Close for restocking…"),
      el("p", { class: "error", role: "alert", text: error || "" }));
  }
  // closing changes how the engine judges weight changes: said, and confirmed, first
  function askClose() {
    const n = shoppersOnMap();
    const note = el("input", { id: "mode-note", type: "text", maxlength: 1000, autocomplete: "off" });
    confirmBox = el("div", { class: "confirm", id: "mode-confirm", role: "group", "aria-labelledby": "mode-confirm-q" },
      el("p", { id: "mode-confirm-q" }, el("strong", { text: "Close the store for restocking?" })),
      el("p", { text: "While it is closed and nobody but staff is inside, a weight change no hand was seen making is booked as a restock or a removal instead of going to review." }),
      el("p", { id: "mode-inside", class: n ? "warn" : "muted", "data-count": String(n), text: n
        ? `${n} ${n === 1 ? "shopper is" : "shoppers are"} inside on the live map: until they leave, weight changes are judged as on an open store.`
        : "Nobody but staff is on the live map." }),
      el("label", { for: "mode-note", text: "Note (optional)" }), note,
      el("button", { type: "button", class: "danger", onclick: () => setMode(true, note.value.trim() || null) }, "Close the store"), " ",
      el("button", { type: "button", class: "secondary", onclick: () => { confirmBox = null; drawMode(); document.getElementById("mode-close")?.focus(); } }, "Cancel"));
    drawMode(); note.focus();
  }
  async function setMode(closed, note) {
    try { mode = await api(token, "POST", "/v1/store-mode", { closed, note: note || null }); confirmBox = null; drawMode(); }
    catch (e) { drawMode(e.message); }
  }
  const REVIEWED = { open: "inventory case open", decided: "inventory case decided", applied: "inventory case applied" };
  async function loadStockMoves() {
    const ms = await api(token, "GET", "/v1/ops/stock-moves?limit=50");
    const qty = x => `${x.quantity > 0 ? "+" : "\u2212"}${Math.abs(x.quantity)} × ${x.name}`;
    fill(document.getElementById("stock-moves"), ms.length ? ms.map(m => el("li", { "data-event": m.event_id, "data-by": m.by },
      el("strong", { text: when(m.recorded_at) }), " ", el("span", { class: "muted", text: `store time ${fmtT(m.t)}` }),
      ` · ${m.plates.join(", ") || "plate unknown"} · `,
      m.moves.length ? m.moves.flatMap((x, i) => [i ? ", " : null, el("span", { class: "move " + (x.quantity > 0 ? "in" : "out"), text: qty(x) })])
        : el("span", { class: "muted", text: m.review === "open" ? "nothing moved until the verdict" : "nothing moved" }),
      ` · ${m.by === "store" ? "store closed" : "staff " + (m.by_name ? `${m.by_name} (${m.by})` : m.by)}`, m.charged.length ? ` · charged ${m.charged.join(", ")}` : null,
      m.review ? [" ", el("span", { class: "state " + (m.review === "open" ? "open" : "applied"), text: REVIEWED[m.review] })] : null,
      m.review && m.reasons.length ? [el("br"), el("span", { class: "muted", text: m.reasons.join("; ") })] : null))
      : [el("li", { class: "muted", text: "no restock or removal yet" })]);
  }

  // ---- analytics --------------------------------------------------------------------------
  document.getElementById("minutes").addEventListener("change", () => drawAnalytics());
  document.getElementById("layer").addEventListener("change", () => drawAnalytics());
  async function drawAnalytics() {
    const m = document.getElementById("minutes").value, layer = document.getElementById("layer").value;
    const a = await api(token, "GET", "/v1/ops/analytics" + (m ? "?minutes=" + m : ""));
    const root = document.getElementById("heat"); drawFloor(root);
    const g = a.grid, cells = g[layer], max = Math.max(1, ...cells.flat());
    const heat = svg("g", { "data-layer": layer });
    cells.forEach((row, j) => row.forEach((v, i) => { if (!v) return;
      const f = Math.sqrt(v / max);
      heat.append(svg("rect", { x: g.x0 + i * g.cell, y: Y(g.y0 + (j + 1) * g.cell), width: g.cell, height: g.cell, fill: layer === "walk" ? `rgba(11,92,173,${0.15 + 0.8 * f})` : `rgba(179,38,30,${0.15 + 0.8 * f})` }, svg("title", {}, `${v} samples`)));
    }));
    root.insertBefore(heat, root.children[1]);
    const ps = a.products.slice(0, 14), W = 520, rowH = 24, H = 20 + rowH * Math.max(1, ps.length);
    const pmax = Math.max(1, ...ps.map(p => p.picks + p.putbacks));
    const bars = document.getElementById("bars"); bars.setAttribute("viewBox", `0 0 ${W} ${H}`); bars.replaceChildren();
    if (!ps.length) bars.append(svg("text", { x: 10, y: 20 }, "nothing picked in this period"));
    ps.forEach((p, i) => {
      const y = 10 + i * rowH, sc = (W - 230) / pmax;
      bars.append(svg("text", { x: 196, y: y + 15, "text-anchor": "end", "font-size": 12 }, p.name.length > 26 ? p.name.slice(0, 25) + "…" : p.name, svg("title", {}, p.name)),
        svg("rect", { x: 200, y: y + 3, width: p.picks * sc, height: 16, fill: "#0b5cad" }, svg("title", {}, `${p.picks} picks`)),
        svg("rect", { x: 200 + p.picks * sc, y: y + 3, width: p.putbacks * sc, height: 16, fill: "#6a3fb5" }, svg("title", {}, `${p.putbacks} put-backs`)),
        svg("text", { x: 204 + (p.picks + p.putbacks) * sc, y: y + 15, "font-size": 11 }, `${p.picks}/${p.putbacks}`));
    });
  }

  // ---- sales: per day of the store, in its time zone ----------------------------------------
  document.getElementById("sales-days").addEventListener("change", () => drawSales());
  // soft hyphens (\u00ad) let the long headers break: the table fits a 1400 px screen
  const SALES_COLS = [["date", "Day"], ["visits", "Visits"], ["buyers", "Buyers"], ["conversion", "Conversion"],
    ["items", "Items"], ["receipts_total", "Receipts"], ["avg_basket", "Avg basket"], ["captured", "Captured"],
    ["refunded", "Refunded"], ["net", "Net"], ["chargebacks", "Charge\u00adbacks"], ["chargebacks_at_risk", "At risk"],
    ["chargebacks_lost", "Lost to charge\u00adbacks"], ["chargeback_fees", "Charge\u00adback fees"], ["net_after_chargebacks", "Net after charge\u00adbacks"], ["in_review", "In review"], ["disputes", "Disputes"],
    ["visit_minutes_median", "Median visit (min)"]];
  function salesCell(k, v) {
    if (v === null || v === undefined) return "–";
    return k === "conversion" ? `${Math.round(v * 100)} %` : String(v);
  }
  async function drawSales() {
    const days = document.getElementById("sales-days").value;
    const r = await api(token, "GET", "/v1/ops/sales?days=" + days);
    document.getElementById("sales-zone").textContent = `days of the store (${r.timezone}), amounts in ${r.currency}`;
    const row = (d, label) => el("tr", {}, SALES_COLS.map(([k], i) =>
      el(i ? "td" : "th", { class: i ? "num" : null, text: i ? salesCell(k, d[k]) : label })));
    fill(document.getElementById("sales"),
      el("thead", {}, el("tr", {}, SALES_COLS.map(([, h], i) => el("th", { class: i ? "num" : null, text: h })))),
      el("tbody", {}, r.days.slice().reverse().map(d => row(d, d.date))),
      el("tfoot", {}, row(r.totals, "Total")));
    const hrs = r.entries_by_hour, W = 520, H = 120, bw = W / 24, hmax = Math.max(1, ...hrs);
    const box = document.getElementById("hours"); box.setAttribute("viewBox", `0 0 ${W} ${H + 16}`); box.replaceChildren();
    hrs.forEach((n, h) => {
      const bh = (H - 10) * n / hmax;
      box.append(svg("rect", { x: h * bw + 2, y: H - bh, width: bw - 4, height: bh, fill: "#0b5cad", "data-hour": h }, svg("title", {}, `${n} entries at ${h}:00–${h}:59`)));
      if (h % 3 === 0) box.append(svg("text", { x: h * bw + 2, y: H + 13, "font-size": 11 }, `${h}h`));
    });
    fill(document.getElementById("top-products"), r.top_products.length
      ? r.top_products.map(p => el("li", {}, `${p.name}: ${p.quantity} sold, ${p.amount} ${r.currency}`))
      : [el("li", { class: "muted", text: "nothing sold in this period" })]);
  }

  // ---- failures: said, not swallowed ------------------------------------------------------
  // a part that cannot be loaded (the service refused, or cannot be reached) is named in the
  // banner under the tabs until it loads again: on the next try, the next "changed", or the
  // catch-up after a reconnection. Before, the rejection went nowhere and the page stayed as
  // it was, without a word.
  const problems = new Map();
  function drawProblems() {
    const p = document.getElementById("problem");
    p.hidden = !problems.size;
    p.textContent = [...problems].map(([what, msg]) => `Could not ${what}: ${msg}.`).join(" ");
  }
  function guarded(what, f) {
    return async (...args) => {
      try { const r = await f(...args); if (problems.delete(what)) drawProblems(); return r; }
      catch (e) { problems.set(what, e.message || String(e)); drawProblems(); }
    };
  }
  // (the loaders above, each wrapped once: every caller, the stream's handlers included, gets it)
  loadCases = guarded("load the review queue", loadCases);
  showCase = guarded("open the review case", showCase);
  loadReceipts = guarded("load the receipts", loadReceipts);
  showReceipt = guarded("open the receipt", showReceipt);
  loadPayments = guarded("load the payments needing attention", loadPayments);
  refreshAcks = guarded("update the alerts' acknowledgements", refreshAcks);
  loadOpenAlerts = guarded("load the alerts waiting for acknowledgement", loadOpenAlerts);
  drawHealth = guarded("load the store's health", drawHealth);
  loadMail = guarded("load the receipt e-mail's state", loadMail);
  loadStockMoves = guarded("load the restocks and removals", loadStockMoves);
  drawAnalytics = guarded("load the analytics", drawAnalytics);
  drawSales = guarded("load the sales", drawSales);
  // back after a drop: what changed meanwhile. A new stream compares its first state with
  // nothing, so no "changed" comes for what happened while the page was cut off.
  function catchUp() { onEvent("changed"); loadMail(); if (current === "health" || current === "analytics") refresh(current); }

  function refresh(name) {
    if (name === "review") loadCases();
    if (name === "receipts") { loadReceipts(); loadPayments(); receiptPane.reload(receiptPane.id, "refresh"); }
    if (name === "health") { drawHealth(); loadMode(); loadStockMoves(); }
    if (name === "analytics") { drawAnalytics(); drawSales(); }
  }
  document.getElementById("signin-error").textContent = WO.signedOutWhy();
  if (token) start(); else document.getElementById("signin").hidden = false;
})();
