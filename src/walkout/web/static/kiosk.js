"use strict";
// Kiosk: an e-mail address or a card token → the receipts of that visitor, each printable on
// its own (the browser's print, with the print stylesheet). A minute after the
// last touch the terminal forgets everything of that customer: the receipts shown, what was
// typed (an address typed and left unsent showed the next customer, who could send it), any
// message.
(() => {
  const { api, el } = WO;
  const IDLE_MS = 60000;
  let token = WO.tokenFromHash("wo-kiosk"), clearTimer = null;
  const idle = () => { clearTimeout(clearTimer); clearTimer = setTimeout(reset, IDLE_MS); };
  for (const ev of ["input", "keydown", "pointerdown"]) document.addEventListener(ev, idle, true);
  const show = (id, on) => { document.getElementById(id).hidden = !on; };
  function ready() { show("setup", !token); show("lookup", !!token); show("signout", !!token); }
  // staff take the terminal out of service (or it was revoked): forget the token, show the set-up
  document.getElementById("signout").addEventListener("click", () => WO.signOut("wo-kiosk"));
  document.getElementById("setup-error").textContent = WO.signedOutWhy();
  document.getElementById("setup-form").addEventListener("submit", e => {
    e.preventDefault(); token = document.getElementById("ktoken").value.trim(); localStorage.setItem("wo-kiosk", token); ready();
  });
  async function lookup(path, body) {
    const err = document.getElementById("kiosk-error"); err.textContent = "";
    try {
      const rs = await api(token, "POST", path, body);
      const box = document.getElementById("found");
      box.replaceChildren(el("h2", { text: rs.length ? `${rs.length} receipt${rs.length > 1 ? "s" : ""}` : "No receipt found" }),
        ...rs.map(r => {
          const at = WO.instant(r.issued_at).toLocaleString();
          const art = el("article", { class: "card", "data-receipt": r.receipt_id }, el("h3", { text: at }), el("p", { class: "muted", text: `Receipt ${r.receipt_id}` }),
            WO.receiptTable(r), WO.taxTable(r), r.under_review ? el("p", { class: "muted", text: "Being checked by staff: it may still change." }) : null);
          art.append(el("button", { type: "button", class: "secondary", "aria-label": `Print the receipt of ${at}`, onclick: () => printOne(art) }, "Print"));
          return art;
        }),
        el("button", { type: "button", onclick: reset }, "Done"));
      show("found", true);
      idle();  // nobody else reads it
    } catch (x) {
      if (x.status === 401 || x.status === 403) return WO.signOut("wo-kiosk", "This token does not work for the kiosk (revoked, or not a kiosk token): enter a kiosk token.");
      err.textContent = x.message;
    }
  }
  // the print stylesheet leaves out the page around the receipts (forms, buttons); this
  // leaves out the other receipts while the one chosen prints
  function printOne(art) {
    const others = [...document.querySelectorAll("#found article")].filter(a => a !== art);
    for (const a of others) a.classList.add("no-print");
    idle();
    try { window.print(); } finally { for (const a of others) a.classList.remove("no-print"); }
  }
  function reset() {
    clearTimeout(clearTimer);
    document.getElementById("found").replaceChildren(); show("found", false);
    document.getElementById("kemail").value = ""; document.getElementById("kcard").value = "";
    document.getElementById("kiosk-error").textContent = "";
  }
  document.getElementById("email-form").addEventListener("submit", e => { e.preventDefault(); lookup("/v1/kiosk/receipts", { email: document.getElementById("kemail").value.trim() }); });
  document.getElementById("card-form").addEventListener("submit", e => { e.preventDefault(); lookup("/v1/kiosk/card-receipts", { card_token: document.getElementById("kcard").value.trim() }); });
  ready();
})();
