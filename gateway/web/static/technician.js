"use strict";
/* The technician's view: every device with its state and error counts, each PTL bus with its modules
   (light one to find it, read its identity, run its self-test), and the last raw scans per scanner. */
(() => {
  const $ = (id) => document.getElementById(id);
  const { t, h } = FG;
  let timer = null;
  let data = null;

  const tag = (kind, icon, text) => h("span", { class: "tag " + kind }, icon + " " + text);
  const state = (online) => (online ? tag("good", "\u2714", t("online")) : tag("bad", "\u2716", t("offline")));
  // a device's own words for its state ("answering", "link up", "printed"...) and a module's mode, translated
  // where the page knows them; anything else (an error sentence from a driver) is shown as the gateway said it
  const word = (prefix, v) => (v ? FG.tv(prefix, v) : "");
  const table = (heads, rows) => (rows.length ? h("table", {}, h("thead", {}, h("tr", {}, heads.map((k) => h("th", {}, t(k))))),
    h("tbody", {}, rows)) : h("p", { class: "muted" }, t("none")));

  async function drive(method, moduleId, what) {
    const path = `/api/v1/technician/modules/${encodeURIComponent(moduleId)}/${what}`;
    try {
      const r = await FG.api(method, path, method === "POST" ? { action_id: FG.newId() } : undefined);
      const text = what === "identity" ? `${r.module_id}: ${r.model_name} #${r.model_number}, serial ${r.serial}, firmware ${r.firmware}` : r.message;
      FG.feedback($("feedback"), "good", t("ok"), text, false);
    } catch (e) {
      FG.feedback($("feedback"), "bad", FG.codeTitle(e.code), e.message, false);
    }
  }

  function render(d) {
    data = d;
    $("gw-name").textContent = d.gateway.site + " / " + d.gateway.gateway;
    const sev = { critical: "bad", warning: "warn", info: "info" };
    $("alarms").replaceChildren(table(["when", "severity", "message"], (d.alarms || []).map((a) => h("tr", { "data-alarm": a.alarm_id },
      h("td", {}, FG.timeEl(a.raised_at)), h("td", {}, tag(sev[a.severity] || "info", "⚠", FG.tv("sev_", a.severity))),
      h("td", {}, a.message)))));
    $("devices").replaceChildren(table(["device", "kind", "state", "detail", "errors", "scans", "rejects"], d.devices.map((x) => h("tr", { "data-device": x.device_id },
      h("td", {}, x.device_id), h("td", { "data-kind": x.kind }, FG.tv("dev_", x.kind)), h("td", {}, state(x.online)),
      h("td", { "data-detail": x.detail || "" }, word("detail_", x.detail)), h("td", {}, x.errors),
      h("td", {}, x.scans), h("td", {}, x.rejects)))));
    $("buses").replaceChildren(...(d.buses.length ? d.buses.map((b) => h("div", { class: "card", "data-bus": b.bus },
      h("h3", {}, b.bus, " ", state(b.link_up), " ", h("span", { class: "muted" }, `${t("transactions")} ${b.transactions} · ${t("misses")} ${b.misses}`)),
      table(["device", "state", "mode", "transactions", "misses", ""], b.modules.map((m) => h("tr", { "data-module": m.module_id },
        h("td", {}, m.module_id), h("td", {}, state(m.online)), h("td", { "data-mode": m.mode || "" }, word("mode_", m.mode)), h("td", {}, m.transactions), h("td", {}, m.misses),
        h("td", {}, h("button", { class: "small", onclick: () => drive("POST", m.module_id, "identify") }, t("identify")), " ",
          h("button", { class: "small", onclick: () => drive("GET", m.module_id, "identity") }, t("identity")), " ",
          h("button", { class: "small", onclick: () => drive("POST", m.module_id, "self-test") }, t("self_test")))))))) : [h("p", { class: "muted" }, t("none"))]));
    $("scanners").replaceChildren(...(d.scanners.length ? d.scanners.map((s) => h("div", {},
      h("h3", {}, s.device_id, " ", state(s.online)),
      table(["when", "raw", "result", "message"], s.last_scans.map((x) => h("tr", {}, h("td", {}, FG.timeEl(x.ts)), h("td", {}, h("code", {}, x.raw)),
        h("td", {}, x.ok ? tag("good", "\u2714", t("ok")) : tag("bad", "\u2716", FG.codeTitle(x.code))), h("td", {}, x.message)))))) : [h("p", { class: "muted" }, t("none"))]));
  }

  async function poll() {
    try { render(await FG.api("GET", "/api/v1/technician/devices")); } catch (e) { /* shown by the connection mark */ }
  }

  document.addEventListener("fg:lang", () => { if (data) render(data); });
  PasswordLogin(["technician", "supervisor"], () => { poll(); timer = setInterval(poll, 3000); },
    () => { if (timer) clearInterval(timer); timer = null; }, "only_technicians");
})();
