"use strict";
(() => {
  FG.initHeader();
  document.getElementById("pack-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const field = document.getElementById("pack-station");
    if (!field.checkValidity()) { field.reportValidity(); return; }  // a station id as the gateway takes it
    location.href = "/pack/" + encodeURIComponent(document.getElementById("pack-station").value.trim());
  });
})();
