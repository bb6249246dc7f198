"use strict";
/* Shared by every page: language, API calls with the CSRF token, actions that survive a Wi-Fi drop without
   being applied twice, feedback that never relies on colour alone (colour, icon, words, sound, vibration),
   live updates over server-sent events, and cutoff countdowns. */
const FG = (() => {
  const state = { me: null, lang: pickLang(), offset: 0, onLogout: [], outboxes: [], streams: [] };

  function pickLang() {
    const saved = localStorage.getItem("fg_lang");
    if (saved === "en" || saved === "zh") return saved;
    return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
  }

  function t(key, vars) {
    const table = I18N[state.lang] || I18N.en;
    let s = key in table ? table[key] : (key in I18N.en ? I18N.en[key] : key);
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.split("{" + k + "}").join(String(v));
    return s;
  }

  // A value the gateway sends as a word (a task state, a device kind...): translated when the page knows it,
  // else shown as sent.
  function tv(prefix, value) {
    const key = prefix + String(value).replace(/ /g, "_");
    return Object.prototype.hasOwnProperty.call(I18N.en, key) ? t(key) : String(value);
  }

  function applyI18n(root) {
    const r = root || document;
    r.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    r.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    r.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
    const titleKey = document.body && document.body.dataset.i18nTitle;
    if (titleKey) document.title = titleKey === "home_title" ? t(titleKey) : t("home_title") + " \u00B7 " + t(titleKey);
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    const sel = document.getElementById("lang");
    if (sel) sel.value = state.lang;
  }

  function setLang(lang, remote) {
    if (lang !== "en" && lang !== "zh") return;
    state.lang = lang;
    localStorage.setItem("fg_lang", lang);
    applyI18n();
    if (remote && state.me) api("POST", "/api/v1/auth/language", { language: lang }).catch(() => {});
    document.dispatchEvent(new CustomEvent("fg:lang"));
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.me && method !== "GET") headers["X-CSRF-Token"] = state.me.csrf;
    let res;
    try {
      res = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      setConn(false);
      throw new ApiError(0, "offline", t("offline_retry"));
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = (data && data.error) || {};
      if (res.status === 401 && state.me && !path.startsWith("/api/v1/auth/login") && !path.startsWith("/api/v1/auth/badge")) {
        logoutLocal();
      }
      throw new ApiError(res.status, err.code || "error", err.message || res.statusText);
    }
    setConn(true);
    return data;
  }

  function newId() {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /* Actions go out one at a time, in order. A network failure or a 5xx is retried with the same action id
     until the gateway answers, so a Wi-Fi drop neither loses a scan nor applies it twice (the gateway
     answers a repeated id with its first answer). Kept in sessionStorage over a page reload. */
  class Outbox {
    constructor(name, onAnswer, onPending) {
      this.key = "fg_outbox_" + name;
      this.onAnswer = onAnswer;
      this.onPending = onPending || (() => {});
      try { this.items = JSON.parse(sessionStorage.getItem(this.key) || "[]"); } catch (e) { this.items = []; }
      this.busy = false;
      state.outboxes.push(this);
    }
    save() { sessionStorage.setItem(this.key, JSON.stringify(this.items)); this.onPending(this.items.length, false); }
    push(path, body) {
      const item = { path, body: Object.assign({ action_id: newId() }, body) };
      this.items.push(item);
      this.save();
      this.pump();
      return item;
    }
    clear() { this.items = []; this.save(); }
    async pump() {
      if (this.busy) return;
      this.busy = true;
      try {
        while (this.items.length) {
          const item = this.items[0];
          let delay = 400;
          for (;;) {
            try {
              const answer = await api("POST", item.path, item.body);
              this.items.shift();
              this.save();
              this.onAnswer(answer, item, null);
              break;
            } catch (e) {
              if (!state.me) { this.clear(); return; }
              if (e.status === 0 || e.status >= 500) {
                this.onPending(this.items.length, true);
                await sleep(delay);
                delay = Math.min(delay * 2, 4000);
                continue;
              }
              this.items.shift();
              this.save();
              this.onAnswer(null, item, e);
              break;
            }
          }
        }
      } finally {
        this.busy = false;
      }
    }
  }

  // -- feedback ---------------------------------------------------------------------------------------------
  let audio = null;
  function beep(kind) {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const tones = kind === "good" ? [[1200, 0, 0.12]] : [[300, 0, 0.18], [300, 0.26, 0.18]];
      for (const [freq, at, dur] of tones) {
        const o = audio.createOscillator();
        const g = audio.createGain();
        o.type = kind === "good" ? "sine" : "square";
        o.frequency.value = freq;
        g.gain.value = 0.2;
        o.connect(g).connect(audio.destination);
        o.start(audio.currentTime + at);
        o.stop(audio.currentTime + at + dur);
      }
    } catch (e) { /* no sound on this device */ }
    try { if (navigator.vibrate) navigator.vibrate(kind === "good" ? 40 : [160, 80, 160]); } catch (e) { /* not allowed */ }
  }

  const ICONS = { good: "\u2714", bad: "\u2716", info: "\u2139", warn: "\u26A0" };
  /* A feedback box marked `toast` (supervisor, technician: long pages) is pinned to the bottom of the viewport,
     so the answer to a button shows where the person is; a good answer goes away by itself, a refusal stays
     until it is closed or replaced. */
  function feedback(el, kind, title, detail, sound) {
    const toast = el.classList.contains("toast");
    el.hidden = false;
    el.className = "feedback " + kind + (toast ? " toast" : "");
    el.dataset.kind = kind;
    const parts = [h("span", { class: "icon", "aria-hidden": "true" }, ICONS[kind] || ""),
      h("div", {}, h("strong", { class: "title" }, title), h("div", { class: "detail" }, detail || ""))];
    if (toast) {
      el.setAttribute("role", kind === "bad" ? "alert" : "status");
      parts.push(h("button", { type: "button", class: "small close", "aria-label": t("close"), title: t("close"),
        onclick: () => { el.hidden = true; } }, "\u00D7"));
      clearTimeout(el._fgTimer);
      if (kind !== "bad" && kind !== "warn") el._fgTimer = setTimeout(() => { el.hidden = true; }, 10000);
    }
    el.replaceChildren(...parts);
    if (sound !== false && (kind === "good" || kind === "bad")) beep(kind);
  }

  function codeTitle(code) {
    const key = "code_" + code;
    return key in I18N.en ? t(key) : t("refused");
  }

  function answerTitle(answer) {
    if (answer.ok) return answer.detail && answer.detail.review ? t("sent_to_review") : t("ok");
    return answer.code ? codeTitle(answer.code) : t("refused");
  }

  // -- DOM helpers --------------------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // -- session ------------------------------------------------------------------------------------------------
  async function me() {
    try {
      state.me = await api("GET", "/api/v1/auth/me");
      if (state.me.language && !localStorage.getItem("fg_lang_manual")) setLang(state.me.language, false);
    } catch (e) {
      state.me = null;
    }
    return state.me;
  }

  async function loginBadge(badge, station) {
    state.me = await api("POST", "/api/v1/auth/badge", { badge, station });
    if (!localStorage.getItem("fg_lang_manual")) setLang(state.me.language, false);
    return state.me;
  }

  async function loginPassword(operatorId, password) {
    state.me = await api("POST", "/api/v1/auth/login", { operator_id: operatorId, password });
    if (!localStorage.getItem("fg_lang_manual")) setLang(state.me.language, false);
    return state.me;
  }

  function logoutLocal() {
    state.me = null;
    // A language chosen by hand was this person's: on a shared PDA the next one gets their own (master data).
    localStorage.removeItem("fg_lang_manual");
    state.outboxes.forEach((o) => o.clear());
    state.streams.forEach((s) => s.close());
    state.streams = [];
    state.onLogout.forEach((fn) => fn());
  }

  /* Logging out drops what the outboxes still hold, and a logout the gateway never got leaves the person
     logged in there: scans made during a Wi-Fi drop were lost that way, and the picker stayed "at work". So
     it waits until every action is sent, and until the gateway can be told. */
  async function logout() {
    const waiting = state.outboxes.reduce((n, o) => n + o.items.length, 0);
    const el = document.getElementById("feedback");
    if (waiting) {
      if (el) feedback(el, "warn", t("logout_not_yet"), t("logout_waiting", { n: waiting }), false);
      state.outboxes.forEach((o) => o.pump());
      return false;
    }
    try {
      await api("POST", "/api/v1/auth/logout", {});
    } catch (e) {
      if (e.status === 0 || e.status >= 500) {
        if (el) feedback(el, "warn", t("logout_not_yet"), t("logout_offline"), false);
        return false;
      } // otherwise the session is gone already (expired, or logged out elsewhere)
    }
    logoutLocal();
    return true;
  }

  // -- connection and live streams ----------------------------------------------------------------------------
  function setConn(online) {
    const el = document.getElementById("conn");
    if (!el) return;
    el.className = "conn " + (online ? "online" : "offline");
    el.textContent = online ? "\u25CF " + t("online") : "\u25CB " + t("offline");
  }

  function stream(path, onData) {
    let es = null;
    let closed = false;
    function open() {
      if (closed) return;
      es = new EventSource(path);
      es.addEventListener("snapshot", (ev) => { setConn(true); onData(JSON.parse(ev.data)); });
      es.addEventListener("logout", () => { es.close(); logoutLocal(); });
      es.onopen = () => setConn(true);
      es.onerror = () => {
        setConn(false);
        if (es.readyState === EventSource.CLOSED && !closed) {
          setTimeout(async () => { if (!closed && (await me())) open(); else if (!closed) logoutLocal(); }, 2000);
        }
      };
    }
    const handle = { close() { closed = true; if (es) es.close(); } };
    state.streams.push(handle);
    open();
    return handle;
  }

  // -- time ---------------------------------------------------------------------------------------------------
  function setNow(serverNow) {
    const ms = Date.parse(serverNow);
    if (!Number.isNaN(ms)) state.offset = ms - Date.now();
  }

  /* Timestamps are UTC (RFC 3339, Z) in the data; pages show local time: the time alone for today, the date
     and time otherwise. `timeEl` keeps the UTC value in the title (for support) and in `datetime`. */
  const pad = (n) => String(n).padStart(2, "0");
  const ymd = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  function localTime(iso, short) {
    if (!iso) return "";
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) return String(iso);
    const d = new Date(ms);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    const clock = short ? hm : `${hm}:${pad(d.getSeconds())}`;
    return ymd(d) === ymd(new Date(Date.now() + state.offset)) ? clock : `${ymd(d)} ${hm}`;
  }
  function timeEl(iso, short) {
    if (!iso) return h("span", { class: "muted" }, "\u2014");
    return h("time", { datetime: iso, title: iso + " (UTC)" }, localTime(iso, short));
  }

  function hms(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const hh = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return (hh ? hh + ":" : "") + mm + ":" + ss;
  }

  function countdown(cutoff) {
    if (!cutoff) return { cls: "none", text: t("no_cutoff") };
    const ms = Date.parse(cutoff) - (Date.now() + state.offset);
    if (ms < 0) return { cls: "late", text: "\u2716 " + t("late_by", { t: hms(ms) }) };
    if (ms < 30 * 60 * 1000) return { cls: "soon", text: "\u26A0 " + t("cutoff_in", { t: hms(ms) }) };
    return { cls: "ok", text: "\u25F7 " + t("cutoff_in", { t: hms(ms) }) };
  }

  function tickCountdowns() {
    document.querySelectorAll("[data-cutoff]").forEach((el) => {
      const c = countdown(el.dataset.cutoff);
      el.textContent = c.text;
      el.className = "countdown " + c.cls;
    });
  }
  setInterval(tickCountdowns, 1000);

  /* Scanning pages: a keyboard-wedge scanner types into whatever has the focus, so the scan field gets it back
     after any control that is not a text field (the language select, a button), and a key typed while such a
     control has the focus goes to the scan field. `target()` is the field to use now, or null (a dialog, a
     hidden form). */
  const TEXT_TYPES = new Set(["text", "search", "number", "password", "email", "tel", "url", ""]);
  function isTextEntry(el) {
    if (!el) return false;
    if (el.tagName === "TEXTAREA" || el.isContentEditable) return true;
    return el.tagName === "INPUT" && TEXT_TYPES.has((el.getAttribute("type") || "").toLowerCase());
  }
  function keepScanFocus(target) {
    const refocus = () => {
      const f = target();
      if (f && !isTextEntry(document.activeElement)) f.focus();
    };
    document.addEventListener("change", (e) => { if (!isTextEntry(e.target)) refocus(); });
    document.addEventListener("fg:lang", refocus);
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.altKey || e.metaKey || e.isComposing) return;
      if (!(e.key.length === 1 && e.key !== " ")) return;  // printable: what a scanner types
      if (isTextEntry(document.activeElement)) return;
      const f = target();
      if (f) f.focus();  // the key itself then lands in the scan field
    }, true);
  }

  function initHeader() {
    const sel = document.getElementById("lang");
    if (sel) {
      sel.value = state.lang;
      sel.addEventListener("change", () => { localStorage.setItem("fg_lang_manual", "1"); setLang(sel.value, true); });
    }
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", () => logout());
    applyI18n();
    setConn(navigator.onLine !== false);
    window.addEventListener("offline", () => setConn(false));
    window.addEventListener("online", () => { setConn(true); state.outboxes.forEach((o) => o.pump()); });
  }

  return {
    state, t, tv, applyI18n, setLang, api, ApiError, newId, Outbox, feedback, answerTitle, codeTitle, beep, h, me, loginBadge,
    loginPassword, logout, logoutLocal, stream, setNow, countdown, tickCountdowns, initHeader, setConn,
    localTime, timeEl, keepScanFocus, isTextEntry,
    onLogout: (fn) => state.onLogout.push(fn),
  };
})();
