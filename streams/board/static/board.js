// WardFlow bed board: live updates over server-sent events, no build step, no framework.
// On a change for this hospital the page's live region is re-fetched as a fragment and swapped in,
// keeping keyboard focus and any bed picked in a Reassign list.
(function () {
  "use strict";
  var body = document.body;
  var hid = body.dataset.hospital;
  if (!hid || body.dataset.live !== "1" || !window.EventSource) { return; }
  var live = document.getElementById("live");
  var busy = false, again = false, waiting = null;

  function remember() {
    var el = document.activeElement;
    var picks = {};
    live.querySelectorAll("select[id]").forEach(function (s) { if (s.value) { picks[s.id] = s.value; } });
    return { focus: el && el.id ? el.id : null, picks: picks };
  }

  function restore(saved) {
    Object.keys(saved.picks).forEach(function (id) {
      var s = document.getElementById(id);
      if (s && s.querySelector('option[value="' + CSS.escape(saved.picks[id]) + '"]')) { s.value = saved.picks[id]; }
    });
    if (saved.focus) { var el = document.getElementById(saved.focus); if (el) { el.focus(); } }
  }

  function refresh() {
    if (busy) { again = true; return; }
    var active = document.activeElement;
    if (active && active.tagName === "SELECT" && live.contains(active)) {
      // someone is choosing a bed: don't swap the list from under them; try again shortly
      if (!waiting) { waiting = setTimeout(function () { waiting = null; refresh(); }, 1000); }
      return;
    }
    busy = true;
    fetch(window.location.pathname, { headers: { "X-Board-Fragment": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null || html === undefined) { return; }
        var saved = remember();
        live.innerHTML = html;
        restore(saved);
        var count = live.querySelector("[data-queue-count]");
        var badge = document.getElementById("queue-count");
        if (count && badge) { badge.textContent = count.dataset.queueCount; }
        body.dataset.updated = String(Date.now());
      })
      .catch(function () { /* the next change or reconnect tries again */ })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  var source = new EventSource("/events");
  source.addEventListener("change", function (e) { if (e.data === hid) { refresh(); } });
  source.addEventListener("hello", function () { body.dataset.connected = "1"; });
  source.onerror = function () { body.dataset.connected = "0"; };
  window.addEventListener("beforeunload", function () { source.close(); });
})();
