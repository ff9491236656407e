"use strict";
// Shopper app (mobile-first): sign up, payment method, rotating entry QR, live cart over SSE,
// receipts, contesting a line (also straight from a receipt e-mail's link), a copy of her data,
// deleting her account, signing out.
(() => {
  const { api, el } = WO;
  let token = localStorage.getItem("wo-shopper");
  let qrTimer = null, stopStream = null, lastReceipts = -1;
  const show = (id, on) => { document.getElementById(id).hidden = !on; };
  // a receipt e-mail's "Contest this line" opens /receipts/<id>/disputes/new?product_id=<line>
  const link = location.pathname.match(/^\/receipts\/([^/]+)\/disputes\/new$/);
  let contest = link && { receipt: decodeURIComponent(link[1]), product: new URLSearchParams(location.search).get("product_id") };
  // the token is gone (signed out, revoked, erased): start afresh, with nothing of it on screen;
  // ``why`` is said above the sign-up after the reload
  function forget(why) {
    localStorage.removeItem("wo-shopper");
    if (why) sessionStorage.setItem("wo-app-note", why);
    location.replace(location.pathname + location.search);
  }
  const note = sessionStorage.getItem("wo-app-note"); sessionStorage.removeItem("wo-app-note");
  document.getElementById("signup-note").textContent = note || "";
  document.getElementById("signup-note").hidden = !note;

  document.getElementById("signout").addEventListener("click", () => { show("signout-confirm", true); document.getElementById("signout-yes").focus(); });
  document.getElementById("signout-no").addEventListener("click", () => { show("signout-confirm", false); document.getElementById("signout").focus(); });
  document.getElementById("signout-yes").addEventListener("click", async () => {
    // revoked, not just forgotten: nobody can sign back in with it, so nobody should be able to use a copy
    try { await api(token, "DELETE", "/v1/me/token"); }
    catch (e) { if (e.status !== 401) { document.getElementById("signout-error").textContent = e.message; return; } }
    forget();
  });

  // her rights over her data: a copy of it (GET /v1/me/export, saved as a file: the app has no
  // password and she never sees her token, so she cannot call the API herself), and erasure
  document.getElementById("export").addEventListener("click", async () => {
    const err = document.getElementById("export-error");
    try {
      const data = await api(token, "GET", "/v1/me/export", undefined, 30000);
      const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
      const a = el("a", { href: url, download: `my-data-${new Date().toISOString().slice(0, 10)}.json` });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      err.textContent = "";
    } catch (x) {
      if (x.status === 401) return forget();
      err.textContent = `Could not download your data: ${x.message}`;
    }
  });
  document.getElementById("erase").addEventListener("click", () => {
    document.getElementById("erase-error").textContent = "";
    show("erase-confirm", true); document.getElementById("erase-confirm").scrollIntoView({ block: "center" });
    document.getElementById("erase-no").focus();   // the safe choice first
  });
  document.getElementById("erase-no").addEventListener("click", () => { show("erase-confirm", false); document.getElementById("erase").focus(); });
  document.getElementById("erase-yes").addEventListener("click", async () => {
    const err = document.getElementById("erase-error");
    try { await api(token, "DELETE", "/v1/me", undefined, 30000); }
    catch (x) {
      if (x.status === 401) return forget();
      // refused (409: inside, owing, a dispute or a review still open): the service says why,
      // and she stays signed in
      err.textContent = `Your account was not deleted: ${x.message}${/[.!?]$/.test(x.message) ? "" : "."}`;
      return;
    }
    forget("Your account was deleted, and this phone signed out. Your receipts are kept for the store's books without your name or address.");
  });

  document.getElementById("signup-form").addEventListener("submit", async e => {
    e.preventDefault();
    const body = { email: document.getElementById("email").value.trim(), name: document.getElementById("name").value.trim() };
    try {
      const r = await fetch("/v1/accounts", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const d = await r.json(); if (!r.ok) throw new Error(d.detail);
      token = d.token; localStorage.setItem("wo-shopper", token); route();
    } catch (err) { document.getElementById("signup-error").textContent = err.message; }
  });
  document.getElementById("payment-form").addEventListener("submit", async e => {
    e.preventDefault();
    const label = document.getElementById("pm-label").value.trim();
    try {
      await api(token, "POST", "/v1/me/payment-methods", { provider_ref: document.getElementById("pm-token").value.trim(), label: label || null });
      route();
    } catch (err) { document.getElementById("payment-error").textContent = err.message; }
  });

  // The entry code: a new one a few seconds before the shown one expires. The countdown runs
  // on whatever happens to the request for the next one, so a code that expired while the
  // phone was cut off (or asleep: the timers stop, the clock does not) is taken off the
  // screen, never shown at the gate to be refused. One request at a time: the app's first
  // look at the cart and its stream's first event both asked for one, and each code spends
  // the account's rate limit.
  const QR_EARLY_MS = 3000, QR_RETRY_MS = 10000, QR_WAIT_MS = 10000;
  let qrUntil = 0, qrFetching = false, qrNextTry = 0;
  function stopQr() { clearTimeout(qrTimer); qrTimer = null; }
  async function fetchQr() {
    qrFetching = true;
    const box = document.getElementById("qr"), err = document.getElementById("qr-error");
    try {
      const q = await api(token, "POST", "/v1/app/entry-qr", undefined, QR_WAIT_MS);
      if (qrTimer === null) return;     // inside (or owing) meanwhile: no code to show
      box.innerHTML = q.svg;              // SVG drawn by the server (segno), no user data in it
      box.dataset.code = q.code;
      qrUntil = Date.now() + q.expires_in_s * 1000;
      err.textContent = "";
    } catch (x) {
      err.textContent = x.status === 0 ? `No new code: ${x.message}` : x.message;
      qrNextTry = Date.now() + QR_RETRY_MS;   // rate-limited or offline: try again later
    } finally { qrFetching = false; }
    if (qrTimer !== null) tickQr();
  }
  function tickQr() {
    clearTimeout(qrTimer);
    const box = document.getElementById("qr"), left = qrUntil - Date.now();
    if (left <= 0 && box.dataset.code) { box.replaceChildren(); delete box.dataset.code; }
    document.getElementById("qr-expiry").textContent = left > 0 ? `A new code in ${Math.round(left / 1000)} s`
      : qrFetching ? "Getting a code…" : "This code expired: a new one comes as soon as the app reaches the store.";
    if (!qrFetching && left <= QR_EARLY_MS && Date.now() >= qrNextTry) fetchQr();
    qrTimer = setTimeout(tickQr, 1000);
  }
  function showQr() { if (qrTimer === null) tickQr(); }
  // a phone waking up runs its timers late: look at the code at once
  document.addEventListener("visibilitychange", () => { if (!document.hidden && qrTimer !== null) tickQr(); });

  // a balance an earlier visit still owes: the gate refuses the code until it is paid, so the
  // app offers to pay it (with the newest card, or one added here) instead of a useless code
  let owed = [];
  async function payOwed(visitId) {
    const err = document.getElementById("owed-error");
    try {
      await api(token, "POST", `/v1/me/balances/${encodeURIComponent(visitId)}/pay`);
      err.textContent = "";
      route();
    } catch (x) { err.textContent = x.message; }
  }
  document.getElementById("owed-card-form").addEventListener("submit", async e => {
    e.preventDefault();
    const err = document.getElementById("owed-error");
    try {
      await api(token, "POST", "/v1/me/payment-methods", { provider_ref: document.getElementById("owed-card").value.trim(), label: null });
      document.getElementById("owed-card").value = "";
      for (const b of owed) await payOwed(b.visit_id);
    } catch (x) { err.textContent = x.message; }
  });
  function drawOwed(list) {
    owed = list || [];
    show("owed", owed.length > 0);
    document.getElementById("owed-list").replaceChildren(...owed.map(b => el("li", { "data-visit": b.visit_id },
      el("strong", { text: `${b.amount} ${b.currency}` }), ` · visit of ${b.exited_at ? WO.instant(b.exited_at).toLocaleString() : "an earlier day"} `,
      el("button", { type: "button", "aria-label": `Pay ${b.amount} ${b.currency} now with your card`, onclick: () => payOwed(b.visit_id) }, "Pay now"))));
  }

  function onCart(c) {
    const inside = c.visit && ["authorizing", "open", "checking_out"].includes(c.visit.state);
    drawOwed(c.owed);
    const owing = !inside && owed.length > 0;
    show("enter", !inside && !owing);
    if (inside || owing) stopQr(); else showQr();
    show("cart", !!inside);
    if (inside) {
      document.getElementById("cart-lines").replaceChildren(...(c.lines.length ? c.lines.map(l => el("li", { "data-product": l.product_id }, el("span", { text: `${l.quantity} × ${l.name}` }), el("span", { text: l.amount }))) : [el("li", { class: "muted", text: "Nothing yet: take what you like, put back what you don't." })]));
      document.getElementById("cart-total").textContent = `${c.total} ${c.visit.currency}`;
    }
    // receipts_seen changes with a new receipt, a review's revision of one, a dispute's answer
    if (c.receipts_seen !== lastReceipts) { lastReceipts = c.receipts_seen; loadReceipts(); }
  }

  let disputes = [];
  async function loadReceipts() {
    let rs;
    const err = document.getElementById("receipts-error");
    try { [rs, disputes] = await Promise.all([api(token, "GET", "/v1/receipts"), api(token, "GET", "/v1/app/disputes")]); }
    catch (x) {   // said, and tried again with the next change the stream brings
      lastReceipts = null; show("receipts-card", true); err.textContent = `Could not load your receipts: ${x.message}`; return;
    }
    err.textContent = "";
    show("receipts-card", rs.length > 0);
    document.getElementById("my-receipts").replaceChildren(...rs.map(r => el("li", {}, el("button", { class: "row", "data-receipt": r.receipt_id, onclick: () => openReceipt(r) },
      el("strong", { text: `${r.total} ${r.currency}` }), ` · ${WO.instant(r.issued_at).toLocaleString()} `, r.under_review ? el("span", { class: "state under_review", text: "under review" }) : null))));
    const open = document.getElementById("my-receipt").dataset.receipt;
    const again = rs.find(r => r.receipt_id === open); if (again) openReceipt(again);
    if (contest) openContested(rs);
  }
  // the receipt and line of the e-mail's link, with its dispute form ready (once)
  function openContested(rs) {
    const want = rs.find(r => r.receipt_id === contest.receipt), product = contest.product;
    contest = null;
    if (!want) {
      show("receipts-card", true);
      document.getElementById("my-receipt").replaceChildren(el("p", { class: "error", role: "alert", text: "That receipt is not in the account on this phone." }));
      return;
    }
    openReceipt(want);
    const line = document.getElementById("dispute-product");
    if (!line) return;   // every line contested already: their answers are shown instead
    if (product && [...line.options].some(o => o.value === product)) line.value = product;
    const reason = document.getElementById("dispute-reason");
    reason.scrollIntoView({ block: "center" }); reason.focus();
  }
  // what became of a contested line, in the shopper's words
  function outcome(d) {
    return { open: "contested: staff are looking at it", refunding: `refund of ${d.refund} ${d.currency} on its way`,
      refunded: `refunded ${d.refund} ${d.currency}`, rejected: "contested: staff checked it and kept the charge",
      corrected: "corrected by a review of the store's cameras" }[d.state] || d.state;
  }
  function openReceipt(r) {
    const box = document.getElementById("my-receipt");
    // a refresh (the stream's) keeps what she was writing in the form
    const was = box.dataset.receipt === r.receipt_id && box.querySelector("form");
    const kept = was && { product: was.product.value, quantity: was.quantity.value, reason: was.reason.value };
    box.dataset.receipt = r.receipt_id;
    const err = el("p", { class: "error", role: "alert" });
    const mine = disputes.filter(d => d.receipt_id === r.receipt_id);
    const name = pid => (r.lines.find(l => l.product_id === pid) || { name: pid }).name;
    const contested = new Set(mine.map(d => d.product_id));
    const open = r.lines.filter(l => !contested.has(l.product_id));   // a line is contested once
    WO.fill(box, el("h3", { text: "Receipt" }), WO.receiptTable(r), WO.taxTable(r), r.under_review ? el("p", { class: "muted", text: "Part of this visit is being checked by staff; the receipt may still change." }) : null,
      mine.length ? [el("h3", { text: "Contested lines" }), el("ul", { class: "list", id: "my-disputes" }, mine.map(d => el("li", { "data-product": d.product_id, "data-state": d.state },
        el("strong", { text: name(d.product_id) }), ` (${d.quantity}): `, el("span", { class: `state ${d.state}`, text: outcome(d) }))))] : null,
      open.length ? el("form", { "aria-label": "Contest a line", onsubmit: async e => {
        e.preventDefault();
        const f = e.target;
        try {
          await api(token, "POST", "/v1/disputes", { receipt_id: r.receipt_id, product_id: f.product.value, quantity: +f.quantity.value, reason: f.reason.value });
          err.textContent = ""; f.replaceWith(el("p", { role: "status", text: "Thank you: staff will look at it. Their answer shows here, beside the line." }));
        } catch (x) { err.textContent = x.message; }
      } }, el("h3", { text: "Something wrong?" }),
        el("label", { for: "dispute-product", text: "Line" }), el("select", { id: "dispute-product", name: "product" }, open.map(l => el("option", { value: l.product_id, text: l.name }))),
        el("label", { for: "dispute-qty", text: "How many are wrong" }), el("input", { id: "dispute-qty", name: "quantity", type: "number", min: 1, value: 1, required: true }),
        el("label", { for: "dispute-reason", text: "What happened" }), el("textarea", { id: "dispute-reason", name: "reason", required: true, rows: 2 }),
        el("button", { type: "submit" }, "Contest this line"), err) : null);
    const f = box.querySelector("form");
    if (f && kept && [...f.product.options].some(o => o.value === kept.product)) {
      f.product.value = kept.product; f.quantity.value = kept.quantity; f.reason.value = kept.reason;
    }
  }

  async function route() {
    if (!token) { show(contest ? "contest-elsewhere" : "signup", true); return; }
    let me;
    clearTimeout(loadTimer);
    try { me = await api(token, "GET", "/v1/app/cart", undefined, LOAD_WAIT_MS); }
    catch (e) {
      if (e.status === 401) { localStorage.removeItem("wo-shopper"); token = null; return route(); }
      // refused (a 5xx, a 429) or unreachable: say so and try again, never a blank page
      document.getElementById("load-why").textContent = `Could not open your account: ${e.message}.`;
      show("load-error", true);
      loadTimer = setTimeout(route, LOAD_RETRY_MS);
      return;
    }
    show("load-error", false);
    show("signup", false);
    show("signout", true);
    show("privacy", true);
    show("payment", !me.payment_method);
    if (!me.payment_method) return;
    onCart(me);
    if (!stopStream) stopStream = WO.stream(token, "/v1/app/stream", (ev, data) => { if (ev === "cart") onCart(data); }, (st, status) => {
      if (status === 401) return forget();  // the stream ends when the token is revoked
      const c = document.getElementById("conn"); c.textContent = st === "live" ? "live" : "offline"; c.className = "pill" + (st === "live" ? " live" : "");
    });
  }
  const LOAD_WAIT_MS = 15000, LOAD_RETRY_MS = 5000;
  let loadTimer = null;
  document.getElementById("load-retry").addEventListener("click", () => route());
  route();
})();
