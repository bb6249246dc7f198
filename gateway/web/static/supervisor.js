"use strict";
/* The supervisor's dashboard, live over server-sent events: a banner of active alarms, orders by state, the
   backlog trend, pickers with their index, breaker and load and why they got (or did not get) work, alarms,
   holds, weight reviews, recent confirms to undo, the sync backlog, device health, returns to stock, lot
   recall and the CSV. "Why" shows the dispatch decision as it was stored when it was made (score, reason,
   every picker passed over and why); only a task still waiting also shows why nobody gets it now. */
(() => {
  const $ = (id) => document.getElementById(id);
  const { t, h } = FG;
  let snap = null;
  let deferred = false;
  let dayChosen = false;  // the supervisor picked an export day: the gateway's date no longer replaces it

  /* The CSV's day defaults to today's UTC date by the gateway's clock, known once a snapshot came: before,
     it was set once from the browser's clock, a day off around midnight when the two differ. */
  function exportLink() {
    $("export-link").href = "/api/v1/supervisor/export.csv?day=" + encodeURIComponent($("export-day").value);
  }
  function defaultDay() {
    if (dayChosen) return;
    const day = $("export-day");
    const value = new Date(Date.now() + FG.state.offset).toISOString().slice(0, 10);
    if (day.value !== value) {
      day.value = value;
      exportLink();
    }
  }

  const tag = (kind, icon, text) => h("span", { class: "tag " + kind }, icon + " " + text);
  const yesNo = (v) => (v ? tag("good", "\u2714", t("yes")) : tag("bad", "\u2716", t("no")));
  const none = () => h("p", { class: "muted" }, t("none"));
  const table = (heads, rows) => (rows.length ? h("table", {}, h("thead", {}, h("tr", {}, heads.map((k) => h("th", {}, t(k))))),
    h("tbody", {}, rows)) : none());
  const cutoff = (iso) => h("span", { class: "countdown", "data-cutoff": iso || "" });

  async function act(path, body, okText) {
    try {
      const r = await FG.api("POST", path, Object.assign({ action_id: FG.newId() }, body));
      const bad = r && r.ok === false;
      FG.feedback($("feedback"), bad ? "bad" : "good", bad ? FG.answerTitle(r) : t("ok"), (r && r.message) || okText || "", false);
    } catch (e) {
      FG.feedback($("feedback"), "bad", FG.codeTitle(e.code), e.message, false);
    }
  }

  function states(byState) {
    const max = Math.max(1, ...Object.values(byState));
    $("states").replaceChildren(...Object.entries(byState).map(([s, n]) => {
      const bar = h("div", { class: "bar" });
      bar.style.width = (100 * n / max).toFixed(1) + "%";
      return h("div", { class: "row", "data-state": s }, h("span", {}, t("state_" + s)), h("div", {}, bar), h("span", { class: "n" }, n));
    }));
  }

  function trend(points) {
    const W = 600; const H = 120; const P = 24;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
    svg.setAttribute("overflow", "hidden");
    svg.setAttribute("class", "trend");
    svg.setAttribute("role", "img");
    const max = Math.max(1, ...points.map((p) => p[1]));
    svg.setAttribute("aria-label", `${t("backlog")}: ${points.length ? points[points.length - 1][1] : 0}`);
    const add = (name, attrs, text) => {
      const el = document.createElementNS(svgNS, name);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
      if (text !== undefined) el.textContent = text;
      svg.append(el);
    };
    add("line", { x1: P, y1: H, x2: W, y2: H });
    add("line", { x1: P, y1: 4, x2: P, y2: H });
    add("text", { x: 0, y: 12 }, max);
    add("text", { x: 0, y: H }, 0);
    if (points.length) {
      const step = points.length > 1 ? (W - P) / (points.length - 1) : 0;
      const xy = points.map((p, i) => `${(P + i * step).toFixed(1)},${(H - (H - 8) * p[1] / max).toFixed(1)}`);
      add("polyline", { points: points.length > 1 ? xy.join(" ") : xy[0] + " " + xy[0] });
      // local time; the last label ends at the right edge (text-anchor end), so its number is never cut off
      add("text", { x: P, y: H + 16, "data-at": points[0][0] }, FG.localTime(points[0][0], true));
      const last = points[points.length - 1];
      add("text", { x: W - 2, y: H + 16, "text-anchor": "end", "data-at": last[0] }, FG.localTime(last[0], true) + " \u00B7 " + last[1]);
    }
    $("trend").replaceChildren(svg);
  }

  const SEV = { info: ["info", "\u2139"], warning: ["warn", "\u26A0"], critical: ["bad", "\u2716"] };
  const RANK = { critical: 0, warning: 1, info: 2 };
  // Above everything, whatever card is in view: the active alarms, most severe first, then the newest.
  function alarmBanner(list) {
    const el = $("alarm-banner");
    el.hidden = !list.length;
    if (!list.length) { el.replaceChildren(); return; }
    const top = [...list].sort((a, b) => (RANK[a.severity] ?? 3) - (RANK[b.severity] ?? 3)
      || (a.raised_at < b.raised_at ? 1 : a.raised_at > b.raised_at ? -1 : 0));
    const worst = top[0].severity;
    el.className = "banner " + (worst === "critical" ? "bad" : "warn");
    const shown = top.slice(0, 3).map((a) => h("div", { "data-alarm": a.alarm_id }, tag((SEV[a.severity] || SEV.info)[0],
      (SEV[a.severity] || SEV.info)[1], t("sev_" + a.severity)), " ", a.message));
    if (top.length > 3) shown.push(h("div", { class: "muted" }, "+" + (top.length - 3)));
    el.replaceChildren(h("strong", {}, t("active_alarms", { n: list.length })), ...shown);
  }

  function alarms(list) {
    $("alarms").replaceChildren(...(list.length ? list.map((a) => {
      const [cls, icon] = SEV[a.severity] || SEV.info;
      return h("div", { class: "banner " + (cls === "bad" ? "bad" : "warn") }, tag(cls, icon, t("sev_" + a.severity)), " ", a.message,
        h("div", { class: "muted" }, FG.timeEl(a.raised_at)));
    }) : [none()]));
  }

  function breakerTag(b) {
    if (b === "closed") return tag("good", "\u2714", t("breaker_closed"));
    if (b === "half_open") return tag("warn", "\u25D0", t("breaker_half_open"));
    return tag("bad", "\u2716", t("breaker_opened"));
  }

  // The latest stored decision about an open task of the picker's zones that named them, and its note.
  function lastDecision(d) {
    if (!d) return h("span", { class: "muted" }, "\u2014");
    return h("span", { "data-last": d.task_id }, d.got ? tag("good", "\u2714", t("got_task", { task: d.task_id }))
      : tag("warn", "\u2716", t("not_given", { task: d.task_id })), " ", d.note);
  }

  function pickers(list) {
    $("pickers").replaceChildren(table(["picker", "index", "breaker", "open_tasks", "available", "logged_in", "break_start", "last_decision", "hold"],
      list.map((p) => h("tr", { "data-picker": p.operator_id },
        h("td", {}, p.name, h("div", { class: "muted" }, p.operator_id)), h("td", {}, p.score), h("td", {}, breakerTag(p.breaker)),
        h("td", {}, p.open_tasks), h("td", {}, yesNo(p.available)), h("td", {}, yesNo(p.logged_in)),
        h("td", {}, p.on_break ? tag("warn", "\u2016", t("on_break")) : ""), h("td", {}, lastDecision(p.last_decision)),
        h("td", {}, h("button", { class: "small", onclick: () => act(p.held ? "/api/v1/supervisor/release" : "/api/v1/supervisor/hold",
          { scope: "operator", id: p.operator_id }) }, p.held ? t("release") : t("hold")))))));
  }

  const candidates = (list) => table(["picker", "available", "score", "index", "load", "note"],
    (list || []).map((x) => h("tr", { "data-candidate": x.operator_id }, h("td", {}, x.name), h("td", {}, x.eligible ? "\u2714" : "\u2716"),
      h("td", {}, x.score === null ? "\u2014" : x.score), h("td", {}, x.index), h("td", {}, x.load), h("td", {}, x.note))));

  // The decision stored with the task when it was made: what its event said, and every picker passed over.
  function decided(task, d) {
    const from = d.from_operator ? `${d.from_name || d.from_operator} \u2192 ` : "";
    const chosen = d.name || d.operator_id || "";
    const who = d.kind === "requeued" ? `\u21A9 ${d.from_name || d.from_operator || ""}`
      : !chosen ? `\u26A0 ${t("nobody_chosen")}`  // escalated with nobody to take it: no tick
        : `\u2714 ${from}${chosen}` + (d.score === undefined ? "" : ` \u00B7 ${t("score")} ${d.score}`);
    const esc = d.escalation ? [" ", tag("warn", "\u26A0", t("level_n", { n: d.escalation.level }) + ": " + d.escalation.reason)] : null;
    return h("details", { "data-key": "why-" + task.task_id, class: "decision", "data-kind": d.kind },
      h("summary", {}, `${who} \u00B7 ${d.reason}`, esc),
      h("div", { class: "muted" }, t("kind_" + d.kind), d.strategy ? " \u00B7 " + d.strategy : "", " \u00B7 ",
        t("decided_at", { at: "" }), FG.timeEl(d.at)),
      d.candidates && d.candidates.length ? candidates(d.candidates) : null,
      d.omitted ? h("div", { class: "muted" }, t("more_pickers", { n: d.omitted })) : null);
  }

  function why(task) {
    const d = task.decision;
    const c = task.choice;  // only for a task still waiting: why nobody gets it now
    if (!d && !c) return h("span", { class: "muted" }, "\u2014");
    return h("div", {}, d ? decided(task, d) : null,
      c ? h("details", { "data-key": "now-" + task.task_id, class: "waiting" },
        h("summary", {}, `${c.operator_id ? "" : "\u26A0 "}${t("waiting_now")}: ${c.reason}`), candidates(c.candidates)) : null);
  }

  function tasks(list, operators, total) {
    const more = total > list.length ? h("p", { class: "muted", "data-key": "tasks-shown" },
      t("tasks_shown", { shown: list.length, total })) : null;
    $("tasks").replaceChildren(...(more ? [more] : []), table(["task", "order", "zone", "state", "picker", "escalation", "cutoff", "why", "reassign"],
      list.map((task) => {
        const sel = h("select", { "data-key": "to-" + task.task_id, "aria-label": t("reassign") },
          operators.map((o) => h("option", { value: o.operator_id, selected: o.operator_id === task.operator_id }, o.name)));
        return h("tr", { "data-task": task.task_id },
          h("td", {}, task.task_id), h("td", {}, task.order_id), h("td", {}, task.zone),
          h("td", { "data-state": task.state }, FG.tv("task_", task.state), task.held ? [" ", tag("bad", "\u2016", t("held"))] : null),
          h("td", {}, task.name || "—"), h("td", {}, task.escalation ? tag("warn", "\u26A0", String(task.escalation)) : "0"),
          h("td", {}, cutoff(task.cutoff_at)), h("td", {}, why(task)),
          h("td", {}, sel, " ", h("button", { class: "small", onclick: () => act(`/api/v1/supervisor/tasks/${encodeURIComponent(task.task_id)}/reassign`,
            { operator_id: sel.value }) }, t("reassign"))));
      })));
  }

  function holds(list) {
    $("holds").replaceChildren(...(list.length ? list.map((x) => h("div", { class: "row-form", "data-hold": x.scope + ":" + x.id },
      tag("bad", "\u2016", FG.tv("scope_", x.scope) + (x.id ? " " + x.id : "")), h("span", { class: "muted" }, x.by, " \u00B7 ", FG.timeEl(x.at)),
      h("button", { class: "small", onclick: () => act("/api/v1/supervisor/release", { scope: x.scope, id: x.id }) }, t("release")))) : [none()]));
  }

  // "1 × SKU-2", with its lot in brackets and, for a serial-tracked unit, which serial is not in the tote.
  function missingText(m) {
    return m.qty + " \u00D7 " + m.sku + (m.lot ? " (" + m.lot + ")" : "") + (m.serial ? " " + t("serial") + " " + m.serial : "");
  }

  function reviews(list) {
    $("reviews").replaceChildren(table(["order", "station", "expected", "actual", "review_issue", ""],
      list.map((r) => h("tr", { "data-review": r.order_id }, h("td", {}, r.order_id), h("td", {}, r.station || ""),
        h("td", {}, r.expected_g + " g"), h("td", {}, r.actual_g == null ? "—" : r.actual_g + " g"),
        h("td", {}, r.reason === "items_missing"
          ? tag("bad", "\u26A0", t("missing_units") + ": " + (r.missing || []).map(missingText).join(", "))
          : tag("warn", "\u26A0", (r.deviation_pct > 0 ? "+" : "") + r.deviation_pct + "%")),
        h("td", {}, r.verified > 0 || r.reason !== "items_missing"  // an empty parcel cannot be shipped: repack only
          ? h("button", { class: "small primary", onclick: () => act(`/api/v1/supervisor/reviews/${encodeURIComponent(r.order_id)}`, { decision: "approve" }) }, t("approve"))
          : "", " ",
          h("button", { class: "small", onclick: () => act(`/api/v1/supervisor/reviews/${encodeURIComponent(r.order_id)}`, { decision: "repack" }) }, t("repack")))))));
  }

  function undo(list) {
    $("undo").replaceChildren(table(["picker", "order", "line", "sku", "qty", "left", ""],
      list.map((u) => h("tr", {}, h("td", {}, u.operator_id || ""), h("td", {}, u.order_id), h("td", {}, u.line_no), h("td", {}, u.sku),
        h("td", {}, u.picked + (u.short ? ` (−${u.short})` : "")), h("td", {}, u.seconds_left + " s"),
        h("td", {}, h("button", { class: "small", onclick: () => act("/api/v1/supervisor/undo", { task_id: u.task_id, line_no: u.line_no }) }, t("undo")))))));
  }

  function sync(s, storage, gw) {
    const kv = [[t("connected"), yesNo(s.connected)], [t("pending"), s.pending === undefined ? "—" : String(s.pending)],
      [t("acked"), s.acked_seq === undefined ? "—" : String(s.acked_seq)], [t("last_seq"), String(s.last_seq)],
      [t("storage"), storage === "ok" ? tag("good", "\u2714", t("storage_ok")) : tag("bad", "\u26A0", storage)]];
    $("sync").replaceChildren(...kv.flatMap(([k, v]) => [h("span", {}, k), h("span", {}, v)]));
    $("gw-name").textContent = gw.site + " / " + gw.gateway;
  }

  function devices(list) {
    $("devices").replaceChildren(table(["device", "kind", "state", "errors"], list.map((d) => h("tr", {},
      h("td", {}, d.device_id), h("td", { "data-kind": d.kind }, FG.tv("dev_", d.kind)), h("td", {}, d.online ? tag("good", "\u2714", t("online")) : tag("bad", "\u2716", t("offline")),
        d.online ? "" : h("div", { class: "muted" }, d.detail)), h("td", {}, d.errors)))));
  }

  function returns(list) {
    $("returns").replaceChildren(table(["order", "line", "sku", "qty", "lot", "location", "tote"], list.map((r) => h("tr", {},
      h("td", {}, r.order_id), h("td", {}, r.line_no), h("td", {}, r.sku), h("td", {}, r.qty), h("td", {}, r.lot || "—"),
      h("td", {}, r.location || "—"), h("td", {}, r.tote || "—")))));
  }

  function orders(o) {
    $("orders").replaceChildren(table(["order", "state", "line", "cutoff", "holds"], o.open.map((x) => h("tr", { "data-order": x.order_id, "data-state": x.state },
      h("td", {}, x.order_id), h("td", {}, t("state_" + x.state)), h("td", {}, `${x.lines_done} / ${x.lines}`), h("td", {}, cutoff(x.cutoff_at)),
      h("td", {}, x.holds.length ? tag("bad", "\u2016", x.holds.map((k) => FG.tv("hold_", k)).join(", ")) : "")))));
  }

  function render(s) {
    snap = s;
    if ($("work").contains(document.activeElement) && document.activeElement.tagName === "SELECT") { deferred = true; return; }
    FG.setNow(s.gateway.now);
    defaultDay();
    const open = [...document.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key);
    alarmBanner(s.alarms);
    states(s.orders.by_state);
    trend(s.trend);
    alarms(s.alarms);
    pickers(s.pickers);
    tasks(s.tasks, s.operators, s.tasks_total ?? s.tasks.length);
    holds(s.holds);
    reviews(s.reviews);
    undo(s.undo);
    sync(s.sync, s.storage, s.gateway);
    devices(s.devices);
    returns(s.returns);
    orders(s.orders);
    open.forEach((k) => { const d = document.querySelector(`details[data-key="${CSS.escape(k)}"]`); if (d) d.open = true; });
    FG.tickCountdowns();
  }

  async function recall(lot) {
    try {
      const r = await FG.api("GET", "/api/v1/supervisor/recall?lot=" + encodeURIComponent(lot));
      $("recall").replaceChildren(
        h("p", {}, t("order") + ": " + (r.orders.join(", ") || t("none"))),
        h("h3", {}, t("picks")), table(["when", "order", "line", "sku", "qty", "location", "picker"], r.picks.map((p) => h("tr", {},
          h("td", {}, FG.timeEl(p.ts)), h("td", {}, p.order_id), h("td", {}, p.line_no), h("td", {}, p.sku), h("td", {}, p.qty), h("td", {}, p.location || ""), h("td", {}, p.operator_id)))),
        h("h3", {}, t("packs")), table(["when", "order", "qty", "station", "sscc"], r.packs.map((p) => h("tr", {},
          h("td", {}, FG.timeEl(p.ts)), h("td", {}, p.order_id), h("td", {}, p.qty), h("td", {}, p.station), h("td", {}, p.sscc)))),
        h("h3", {}, t("scans")), table(["when", "device", "picker", "order", "result"], r.scans.map((p) => h("tr", {},
          h("td", {}, FG.timeEl(p.ts)), h("td", {}, p.device_id || ""), h("td", {}, p.operator_id || ""), h("td", {}, p.order_id || ""), h("td", {}, p.result || "")))));
    } catch (e) {
      FG.feedback($("feedback"), "bad", FG.codeTitle(e.code), e.message, false);
    }
  }

  function start() {
    let handle = null;
    document.addEventListener("fg:lang", () => { if (snap) render(snap); });
    $("work").addEventListener("focusout", () => setTimeout(() => { if (deferred && snap) { deferred = false; render(snap); } }, 50));
    $("hold-form").addEventListener("submit", (e) => {
      e.preventDefault();
      act("/api/v1/supervisor/hold", { scope: $("hold-scope").value, id: $("hold-id").value.trim() || null });
    });
    $("recall-form").addEventListener("submit", (e) => { e.preventDefault(); recall($("recall-lot").value.trim()); });
    $("export-day").addEventListener("change", () => { dayChosen = true; exportLink(); });
    defaultDay();
    PasswordLogin(["supervisor"], () => {
      handle = FG.stream("/api/v1/supervisor/stream", render);
    }, () => { if (handle) handle.close(); }, "only_supervisors");
  }

  start();
})();
