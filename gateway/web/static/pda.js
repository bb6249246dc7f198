"use strict";
/* The picker's PDA: badge login, the next location and quantity in big type, a scan field that keeps the
   focus (the PDA's scanner types into it and presses Enter), confirm / short / undo, break and logout.
   Every action goes through an Outbox, so a Wi-Fi drop delays it but never loses or doubles it. */
(() => {
  const $ = (id) => document.getElementById(id);
  const { t, h } = FG;
  let view = null;
  let dialogOpen = false;
  let shortFor = null; // the line the Short dialog was opened for (view.next may move on while it is open)
  let typed = ""; // keys typed into the Short dialog: a scanner's burst is a scan, not a quantity

  const outbox = new FG.Outbox("pda", onAnswer, (n, retrying) => {
    $("pending").textContent = n ? (retrying ? t("waiting_n", { n }) : t("sending")) : "";
  });

  function showLogin() {
    $("login").hidden = false;
    $("work").hidden = true;
    $("logout").hidden = true;
    $("break").hidden = true;
    $("who").textContent = "";
    $("badge").value = "";
    $("badge").focus();
  }

  function showWork() {
    const me = FG.state.me;
    $("login").hidden = true;
    $("work").hidden = false;
    $("logout").hidden = false;
    $("break").hidden = false;
    $("who").textContent = me.name;
    FG.stream("/api/v1/pda/stream", render);
    refresh();
    outbox.pump();
    $("scan").focus();
  }

  async function refresh() {
    try { render(await FG.api("GET", "/api/v1/pda/view")); } catch (e) { /* the stream catches up */ }
  }

  function render(v) {
    view = v;
    FG.setNow(v.now);
    $("break-banner").hidden = !v.on_break;
    $("break").textContent = v.on_break ? t("break_end") : t("break_start");
    const next = v.next;
    $("idle").hidden = !!next;
    $("job").hidden = !next;
    $("hold-banner").hidden = !(next && next.on_hold);
    // Orders cancelled while their units were in this picker's hands: what to put back (until the next scan).
    const back = v.put_back || [];
    $("put-back").hidden = !back.length;
    $("put-back").replaceChildren(...back.map((b) => h("div", { "data-order": b.order_id },
      "\u21A9 ", b.undone_line
        ? t("undone_by", { line: b.undone_line, order: b.order_id, by: b.by, tote: b.tote || "—" })
        : t("put_back", { order: b.order_id, tote: b.tote || "—" }), " ",
      b.units.map((u) => u.qty + " \u00D7 " + u.sku + (u.location ? " → " + u.location : "")).join(", "))));
    $("confirm").disabled = !next;
    $("short").disabled = !next;
    if (next) {
      $("loc").textContent = next.location || "—";
      $("sku").textContent = next.sku + (next.description ? " · " + next.description : "");
      $("qty").textContent = next.remaining;
      $("progress").textContent = t("picked_of", { p: next.picked, q: next.qty });
      $("scanned-state").textContent = next.item_scanned ? "\u2714 " + t("item_scanned") : "\u25A2 " + t("scan_item");
      $("next-cutoff").dataset.cutoff = next.cutoff_at || "";
      $("next-order").textContent = t("order") + " " + next.order_id + (next.tote ? " · " + next.tote : "");
    }
    const u = v.undo;
    $("undo").disabled = !u;
    $("undo").textContent = u ? t("undo_line", { n: u.line_no, s: u.seconds_left }) : t("undo");
    $("lines").replaceChildren(...v.lines.map((ln) => h("li", { "data-line": ln.line_no },
      h("span", {}, h("strong", {}, ln.location || "—"), " ", ln.sku),
      h("span", {}, ln.remaining, " / ", ln.qty),
      h("span", { class: "countdown", "data-cutoff": ln.cutoff_at || "" }),
    )));
    FG.tickCountdowns();
  }

  function onAnswer(answer, item, err) {
    const fb = $("feedback");
    if (err) {
      FG.feedback(fb, "bad", FG.codeTitle(err.code), err.message);
      return;
    }
    const detail = answer.message + (answer.replayed ? " (" + t("replayed") + ")" : "");
    FG.feedback(fb, answer.ok ? "good" : "bad", FG.answerTitle(answer), detail);
    if (answer.logged_out) {
      FG.logoutLocal();
      return;
    }
    if (answer.switched_to) {
      // Another picker's badge: the gateway carries the page on as them (a new session cookie). Their session
      // (CSRF token included) is taken at once, before the outbox sends the next scan; the old session's
      // stream is closed first, so its "logout" cannot send the new picker to the badge screen.
      FG.state.streams.forEach((s) => s.close());
      FG.state.streams = [];
      FG.state.me = answer.me;
      localStorage.removeItem("fg_lang_manual"); // a language chosen by hand ends with its session
      FG.setLang(answer.me.language, false);
      showWork();
      return;
    }
    refresh();
  }

  function scanEntered() {
    const text = $("scan").value;
    $("scan").value = "";
    if (text.trim()) outbox.push("/api/v1/pda/scan", { text });
  }

  async function badgeEntered() {
    const badge = $("badge").value.trim();
    $("badge").value = "";
    if (!badge) return;
    try {
      await FG.loginBadge(badge, "pick");
      $("login-feedback").hidden = true;
      FG.beep("good");
      showWork();
    } catch (e) {
      FG.feedback($("login-feedback"), "bad", FG.codeTitle(e.code), e.message);
      $("badge").focus();
    }
  }

  function keepFocus() {
    setTimeout(() => {
      const a = document.activeElement;
      if (dialogOpen || $("work").hidden) return;
      if (!a || a === document.body || a.tagName === "BUTTON") $("scan").focus();
    }, 150);
  }

  function openShort() {
    if (!view || !view.next) return;
    const n = view.next;
    shortFor = { task_id: n.task_id, line_no: n.line_no };
    typed = "";
    $("short-line").textContent = `${t("line")} ${n.line_no} · ${n.location || ""} · ${n.sku} · ${t("picked_of", { p: n.picked, q: n.qty })}`;
    $("short-qty").value = "0";
    $("short-qty").max = String(n.remaining);
    dialogOpen = true;
    $("short-dialog").showModal();
    $("short-qty").select();
  }

  function start() {
    FG.initHeader();
    FG.onLogout(showLogin);
    document.addEventListener("fg:lang", () => { if (view) render(view); });
    $("badge").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); badgeEntered(); } });
    $("scan").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); scanEntered(); } });
    $("scan").addEventListener("blur", keepFocus);
    FG.keepScanFocus(() => (dialogOpen ? null : !$("work").hidden ? $("scan") : !$("login").hidden ? $("badge") : null));
    document.addEventListener("click", keepFocus);
    $("confirm").addEventListener("click", () => {
      const n = view && view.next;
      if (n) outbox.push("/api/v1/pda/confirm", { task_id: n.task_id, line_no: n.line_no, qty: n.remaining });
    });
    $("short").addEventListener("click", openShort);
    // The scanner types into whatever has the focus: in the dialog, a barcode went into the quantity field and
    // was lost. Keys are collected as typed; at Enter, more than a quantity's 4 digits is a scan: it is sent
    // as one, and the dialog closes without a short (the scan's answer shows).
    $("short-dialog").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        if (typed.length > 4) {
          e.preventDefault();
          const text = typed;
          typed = "";
          $("short-dialog").close("scan");
          outbox.push("/api/v1/pda/scan", { text }); // its answer is the feedback: no short was made
        }
        typed = "";
      } else if (e.key === "Backspace") {
        typed = typed.slice(0, -1);
      } else if (e.key.length === 1) {
        typed += e.key;
      }
    });
    $("short-dialog").addEventListener("close", () => {
      dialogOpen = false;
      const n = shortFor;
      shortFor = null;
      if ($("short-dialog").returnValue === "ok" && n) {
        const qty = Math.max(0, Math.min(9999, parseInt($("short-qty").value || "0", 10) || 0));
        outbox.push("/api/v1/pda/short", { task_id: n.task_id, line_no: n.line_no, qty_picked: qty });
      }
      $("scan").focus();
    });
    $("undo").addEventListener("click", () => {
      const u = view && view.undo;
      if (u) outbox.push("/api/v1/pda/undo", { task_id: u.task_id, line_no: u.line_no });
    });
    $("break").addEventListener("click", () => outbox.push("/api/v1/pda/break", { on: !(view && view.on_break) }));
    FG.me().then((me) => (me && me.kind === "badge" && me.station === "pick" ? showWork() : showLogin()));
  }

  start();
})();
