"use strict";
/* A packing station: badge login, then scan the order or tote, a carton, and every item; the expected items
   tick off as they are scanned, refusals are said in plain words, the weight is checked against its
   tolerance where there is a scale, and the packed parcel's SSCC is shown with a reprint button. */
(() => {
  const $ = (id) => document.getElementById(id);
  const { t, h } = FG;
  const station = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const base = "/api/v1/pack/" + encodeURIComponent(station);
  let view = null;
  let lastResult = null; // the scale's last answer already seen (null: nothing rendered yet)

  const outbox = new FG.Outbox("pack-" + station, onAnswer, (n, retrying) => {
    $("pending").textContent = n ? (retrying ? t("waiting_n", { n }) : t("sending")) : "";
  });

  function showLogin() {
    $("login").hidden = false;
    $("work").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("badge").focus();
  }

  function showWork() {
    $("login").hidden = true;
    $("work").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = FG.state.me.name;
    FG.stream(base + "/stream", render);
    refresh();
    outbox.pump();
    $("scan").focus();
  }

  async function refresh() {
    try { render(await FG.api("GET", base + "/view")); } catch (e) { /* the stream catches up */ }
  }

  function render(v) {
    view = v;
    const has = !!v.order_id;
    $("no-order").hidden = has;
    $("order-box").hidden = !has;
    if (has) {
      $("order-id").textContent = v.order_id;
      $("order-state").textContent = v.order_state ? t("state_" + v.order_state) : "";
      $("order-tote").textContent = v.tote || "—";
      $("order-carton").textContent = v.carton || "—";
      $("units").textContent = t("progress_units", { n: v.units_scanned, m: v.units_expected });
      // Once every unit is scanned the code would be refused ("nothing is missing"): no hint while weighing.
      $("missing-hint").textContent = v.awaiting_weight ? "" : t("missing_hint", { code: v.missing_code });
    }
    $("items").replaceChildren(...v.items.map((it) => {
      const done = it.scanned >= it.expected;
      return h("tr", { class: done ? "done" : "" },
        h("td", {}, done ? "\u2714 " + t("complete") : "\u25A2 " + t("missing_n", { n: it.expected - it.scanned })),
        h("td", {}, it.sku), h("td", {}, it.lot || "—"), h("td", {}, it.serial || "—"),
        h("td", {}, it.scanned), h("td", {}, it.expected));
    }));
    if (!v.has_scale) $("weight").textContent = t("scale_none") + (has ? " · " + t("expected_weight", { g: v.expected_g, p: v.tolerance_pct }) : "");
    else $("weight").textContent = has ? t("expected_weight", { g: v.expected_g, p: v.tolerance_pct }) : "—";
    $("awaiting").hidden = !v.awaiting_weight;
    $("reviews").hidden = !v.reviews.length;
    $("reviews").textContent = "\u26A0 " + t("reviews_waiting") + ": " + v.reviews.join(", ");
    const p = v.parcel;
    $("parcel-card").hidden = !p || has;
    if (p) {
      $("parcel-order").textContent = p.order_id;
      $("parcel-sscc").textContent = p.sscc;
    }
    $("reprint").disabled = !v.has_printer;
    const r = v.result;
    // Results decided away from this page (the scale's weight, the hub cancelling the order at the bench).
    if (r && r.source !== "page" && lastResult !== null && r.ts !== lastResult) {
      if (r.source === "review") FG.feedback($("feedback"), r.ok ? "good" : "warn", r.ok ? t("approve") : t("repack"), r.message);
      else FG.feedback($("feedback"), r.ok ? "good" : "bad", r.ok ? t("ok") : t("refused"), r.message);
    }
    lastResult = r ? r.ts : "";
  }

  function onAnswer(answer, item, err) {
    const fb = $("feedback");
    if (err) {
      FG.feedback(fb, "bad", FG.codeTitle(err.code), err.message);
      return;
    }
    const detail = answer.message + (answer.replayed ? " (" + t("replayed") + ")" : "");
    // Taken, but the order went to a supervisor's review (the missing code): amber, not the green of a verified
    // item, with the beep of a scan that was taken.
    const review = answer.ok && answer.detail && answer.detail.review;
    FG.feedback(fb, review ? "warn" : answer.ok ? "good" : "bad", FG.answerTitle(answer), detail);
    if (review) FG.beep("good");
    if (answer.logged_out) { FG.logoutLocal(); return; }
    refresh();
  }

  async function badgeEntered() {
    const badge = $("badge").value.trim();
    $("badge").value = "";
    if (!badge) return;
    try {
      await FG.loginBadge(badge, station);
      $("login-feedback").hidden = true;
      FG.beep("good");
      showWork();
    } catch (e) {
      FG.feedback($("login-feedback"), "bad", FG.codeTitle(e.code), e.message);
    }
  }

  function start() {
    $("station-name").textContent = station;
    FG.initHeader();
    FG.onLogout(showLogin);
    document.addEventListener("fg:lang", () => { if (view) render(view); });
    $("badge").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); badgeEntered(); } });
    $("scan").addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      const text = $("scan").value;
      $("scan").value = "";
      if (text.trim()) outbox.push(base + "/scan", { text });
    });
    $("scan").addEventListener("blur", () => setTimeout(() => {
      const a = document.activeElement;
      if (!$("work").hidden && (!a || a === document.body || a.tagName === "BUTTON")) $("scan").focus();
    }, 150));
    FG.keepScanFocus(() => (!$("work").hidden ? $("scan") : !$("login").hidden ? $("badge") : null));
    $("reprint").addEventListener("click", async () => {
      try {
        const r = await FG.api("POST", base + "/reprint", { action_id: FG.newId() });
        FG.feedback($("feedback"), "good", t("ok"), r.message);
      } catch (e) {
        FG.feedback($("feedback"), "bad", FG.codeTitle(e.code), e.message);
      }
    });
    FG.me().then((me) => (me && me.kind === "badge" && me.station === station ? showWork() : showLogin()));
  }

  start();
})();
