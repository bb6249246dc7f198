"use strict";
/* Password login for the supervisor and technician pages; calls `onIn` once a session with one of `roles`
   exists and `onOut` when there is none. A session without one of the roles (a technician on the supervisor's
   page) stays on the login form with `deniedKey`'s words, whether it logged in here or was there already. */
const PasswordLogin = (roles, onIn, onOut, deniedKey) => {
  const $ = (id) => document.getElementById(id);
  const allowed = (me) => !!me && Array.isArray(me.roles) && me.roles.some((r) => roles.includes(r));
  function out() {
    $("login").hidden = false;
    $("work").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    onOut();
    $("op").focus();
  }
  function inside(me) {
    $("login").hidden = true;
    $("work").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = me.name;
    onIn(me);
  }
  function denied(me) {
    out();
    FG.feedback($("login-feedback"), "bad", FG.t(deniedKey), me.name + " (" + me.operator_id + ")", false);
    $("login-feedback").dataset.code = "role";
  }
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const me = await FG.loginPassword($("op").value.trim(), $("pw").value);
      $("pw").value = "";
      if (!allowed(me)) { denied(me); return; }
      $("login-feedback").hidden = true;
      inside(me);
    } catch (err) {
      $("pw").value = "";
      // the login route answers a wrong id or password with 401 `unauthenticated`: say that, not "Not logged in"
      const title = err.status === 401 && err.code === "unauthenticated" ? FG.t("wrong_password") : FG.codeTitle(err.code);
      FG.feedback($("login-feedback"), "bad", title, err.message, false);
      $("login-feedback").dataset.code = err.code || "";
    }
  });
  FG.initHeader();
  FG.onLogout(out);
  FG.me().then((me) => (allowed(me) ? inside(me) : me ? denied(me) : out()));
};
