"use strict";
// Shared by the three pages: the bearer token, JSON calls, and a Server-Sent Events reader.
// The SSE stream is read with fetch() because EventSource cannot send the Authorization header.
const WO = (() => {
  // a staff page's sign-out: forget the token and reload, so nothing it showed stays on screen
  // (the reason, if any, is shown by the sign-in form after the reload)
  function signOut(key, why) {
    localStorage.removeItem(key);
    if (why) sessionStorage.setItem("wo-signed-out", why); else sessionStorage.removeItem("wo-signed-out");
    location.replace(location.pathname);
  }
  function signedOutWhy() {
    const why = sessionStorage.getItem("wo-signed-out"); sessionStorage.removeItem("wo-signed-out");
    return why || "";
  }
  function tokenFromHash(key) {
    const m = new URLSearchParams(location.hash.slice(1)).get("token");
    if (m) { localStorage.setItem(key, m); history.replaceState(null, "", location.pathname); }
    return localStorage.getItem(key);
  }
  // a failed call throws an Error whose message a person can read: the service's own reason,
  // or that it could not be reached (status 0), never an empty one. ``timeoutMs``: give up
  // then (status 0 too): a connection that died without a close would wait for ever
  async function api(token, method, path, body, timeoutMs) {
    let r, data;
    const ctl = timeoutMs ? new AbortController() : null;
    const timer = ctl && setTimeout(() => ctl.abort(), timeoutMs);
    try {
      r = await fetch(path, {
        method, headers: Object.assign({ "Authorization": "Bearer " + token },
          body === undefined ? {} : { "Content-Type": "application/json" }),
        body: body === undefined ? undefined : JSON.stringify(body), signal: ctl?.signal });
      data = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
    } catch (x) {
      const e = new Error(ctl?.signal.aborted ? "the service did not answer (is the network down?)"
        : "the service cannot be reached (is the network down?)"); e.status = 0; throw e;
    } finally { clearTimeout(timer); }
    if (!r.ok) { const e = new Error(data.detail || r.statusText || `HTTP ${r.status}`); e.status = r.status; e.code = data.error; throw e; }
    return data;
  }
  // onEvent(name, data, id); reconnects after a drop (resuming after the last id when given).
  // A connection can die without a close (a laptop asleep, a NAT entry gone): the service sends
  // something at least every X-Keepalive-S seconds, and a stream quiet for three of them is
  // dropped and reconnected (as is a connection attempt unanswered for 30 s)
  function stream(token, path, onEvent, onState) {
    let stopped = false, lastId = null;
    async function run() {
      while (!stopped) {
        const ctl = new AbortController(); let timer = null;
        const watch = ms => { clearTimeout(timer); timer = setTimeout(() => ctl.abort(), ms); };
        try {
          const url = lastId === null ? path : path + (path.includes("?") ? "&" : "?") + "after=" + lastId;
          watch(30000);
          const r = await fetch(url, { headers: { "Authorization": "Bearer " + token }, signal: ctl.signal });
          if (!r.ok) { onState && onState("error", r.status); if (r.status === 401 || r.status === 403) return; throw new Error(r.status); }
          const quietMs = 3000 * (Number(r.headers.get("x-keepalive-s")) || 15);
          watch(quietMs);
          onState && onState("live");
          const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
          for (;;) {
            const { value, done } = await reader.read(); if (done) break;
            watch(quietMs);
            buf += dec.decode(value, { stream: true });
            let i;
            while ((i = buf.indexOf("\n\n")) >= 0) {
              const block = buf.slice(0, i); buf = buf.slice(i + 2);
              let ev = "message", data = "", id = null;
              for (const line of block.split("\n")) {
                if (line.startsWith("event: ")) ev = line.slice(7);
                else if (line.startsWith("data: ")) data += line.slice(6);
                else if (line.startsWith("id: ")) id = line.slice(4);
              }
              if (!data) continue;
              if (id !== null && path.includes("/ops/")) lastId = id;
              onEvent(ev, JSON.parse(data), id);
            }
          }
        } catch (e) { /* dropped (or quiet too long): reconnect below */ }
        finally { clearTimeout(timer); ctl.abort(); }
        onState && onState("offline");
        await new Promise(res => setTimeout(res, 1500));
      }
    }
    run();
    return () => { stopped = true; };
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "style") e.style.cssText = v;   // the CSP refuses style attributes, not the CSSOM
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : document.createTextNode(String(k)));
    return e;
  }
  // replaceChildren that skips absent parts (null, undefined) as el() does: the DOM would
  // write them out as the text "null"
  function fill(box, ...kids) { box.replaceChildren(...kids.flat().filter(k => k !== null && k !== undefined)); }
  const SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, v);
    for (const k of kids.flat()) if (k) e.append(k.nodeType ? k : document.createTextNode(String(k)));
    return e;
  }
  // store time as m:ss, or m:ss.d with digits = 1 (a replay steps in tenths of a second)
  function fmtT(t, digits = 0) {
    if (t === null || t === undefined) return "";
    const f = 10 ** digits, s = Math.max(0, Math.round(t * f)) / f, m = Math.floor(s / 60);
    return `${m}:${(s - m * 60).toFixed(digits).padStart(digits ? 3 + digits : 2, "0")}`;
  }
  // an instant the service sent (ISO 8601): UTC where it names no zone, as SQLite hands times
  // back; Date would read a zone-less one as the browser's own local time, hours off
  function instant(iso) { return new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : iso + "Z"); }
  // a wall-clock time in the browser's zone: the time of day if today, else the date too
  function when(iso) {
    const d = instant(iso);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  }
  function receiptTable(rc) {
    return el("table", { class: "rc" },
      el("thead", {}, el("tr", {}, el("th", { text: "Item" }), el("th", { class: "num", text: "Qty" }), el("th", { class: "num", text: "Amount" }))),
      el("tbody", {}, rc.lines.map(l => el("tr", { "data-product": l.product_id }, el("td", { text: l.name }), el("td", { class: "num", text: l.quantity }), el("td", { class: "num", text: l.amount })))),
      el("tfoot", {}, el("tr", {}, el("th", { text: "Total" }), el("td"), el("th", { class: "num", text: `${rc.total} ${rc.currency}` }))));
  }
  // the tax included in a receipt's total, per rate (null where the store itemises no tax)
  const pct = rate => `${+(rate * 100).toFixed(4)}%`;
  function taxTable(rc) {
    if (!rc.tax || !rc.tax.length) return null;
    return el("table", { class: "tax" },
      el("caption", { text: "Prices include tax" }),
      el("thead", {}, el("tr", {}, ["Tax class", "Rate", "Net", "Tax", "Gross"].map((h, i) => el("th", { class: i ? "num" : null, text: h })))),
      el("tbody", {}, rc.tax.map(t => el("tr", { "data-tax-class": t.tax_class }, el("td", { text: t.tax_class }), el("td", { class: "num", text: pct(t.rate) }),
        el("td", { class: "num", text: t.net }), el("td", { class: "num", text: t.tax }), el("td", { class: "num", text: t.gross })))));
  }
  // keyboard navigation of a tablist (arrows, Home, End), per the WAI-ARIA tabs pattern
  function tabs(list, onSelect) {
    const items = [...list.querySelectorAll("[role=tab]")];
    function select(t) {
      for (const x of items) {
        const on = x === t; x.setAttribute("aria-selected", on); x.tabIndex = on ? 0 : -1;
        document.getElementById(x.getAttribute("aria-controls")).hidden = !on;
      }
      onSelect(t.id.replace("tab-", ""));
    }
    list.addEventListener("click", e => { const t = e.target.closest("[role=tab]"); if (t) select(t); });
    list.addEventListener("keydown", e => {
      const i = items.indexOf(document.activeElement); if (i < 0) return;
      const j = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: items.length - 1 }[e.key];
      if (j === undefined) return; e.preventDefault();
      const t = items[(j + items.length) % items.length]; t.focus(); select(t);
    });
    return select;
  }
  return { tokenFromHash, signOut, signedOutWhy, api, stream, el, fill, svg, fmtT, instant, when, receiptTable, taxTable, tabs };
})();
