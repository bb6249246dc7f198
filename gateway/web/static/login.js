"use strict";
/* Password login for the supervisor and technician pages; calls `onIn` once a session with one of `roles`
   exists and `onOut` when there is none. */
const PasswordLogin = (roles, onIn, onOut) => {
  const $ = (id) => document.getElementById(id);
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
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const me = await FG.loginPassword($("op").value.trim(), $("pw").value);
      $("pw").value = "";
      $("login-feedback").hidden = true;
      inside(me);
    } catch (err) {
      $("pw").value = "";
      FG.feedback($("login-feedback"), "bad", FG.codeTitle(err.code), err.message, false);
    }
  });
  FG.initHeader();
  FG.onLogout(out);
  FG.me().then((me) => (me && me.roles.some((r) => roles.includes(r)) ? inside(me) : out()));
};
