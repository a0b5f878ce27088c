// hookd console: live refresh of server-rendered fragments, and confirmation of actions.
// Served from /ui/static/app.js; the Content-Security-Policy allows no other script.
"use strict";

function refresh(region) {
  const url = region.dataset.live;
  const every = Number(region.dataset.every || 3000);
  const toggle = document.getElementById("live-toggle");
  const stamp = document.getElementById("updated");
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden || (toggle && !toggle.checked)) return;
    busy = true;
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (r.redirected || r.status === 401 || r.status === 403) {
        window.location.reload(); // the session ended: show the login
        return;
      }
      if (r.ok) {
        // The server escaped every value in this fragment.
        region.innerHTML = await r.text();
        if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
      }
    } catch (e) {
      if (stamp) stamp.textContent = "cannot reach hookd";
    } finally {
      busy = false;
    }
  }, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(refresh);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  });
});
