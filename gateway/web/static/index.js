"use strict";
(() => {
  FG.initHeader();
  document.getElementById("pack-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.href = "/pack/" + encodeURIComponent(document.getElementById("pack-station").value.trim());
  });
})();
