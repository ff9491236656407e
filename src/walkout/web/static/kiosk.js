"use strict";
// Kiosk: an e-mail address or a card token → the receipts of that visitor. A minute after the
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
        ...rs.map(r => el("article", { class: "card", "data-receipt": r.receipt_id }, el("h3", { text: WO.instant(r.issued_at).toLocaleString() }), WO.receiptTable(r), WO.taxTable(r),
          r.under_review ? el("p", { class: "muted", text: "Being checked by staff: it may still change." }) : null)),
        el("button", { type: "button", onclick: reset }, "Done"));
      show("found", true);
      idle();  // nobody else reads it
    } catch (x) {
      if (x.status === 401 || x.status === 403) return WO.signOut("wo-kiosk", "This token does not work for the kiosk (revoked, or not a kiosk token): enter a kiosk token.");
      err.textContent = x.message;
    }
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
