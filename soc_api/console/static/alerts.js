// The alert queue, enhanced: keyboard navigation (j / k move between alerts, Enter opens the one in focus) and new
// alerts arriving without a reload (Server-Sent Events from /console/alerts/stream). Without JavaScript the page
// works as it is: a GET form, links, and a reload shows new alerts. No third-party code; no inline script (the
// page passes what this needs in data- attributes).
(function () {
  "use strict";

  var queue = document.getElementById("alert-queue");
  if (!queue) {
    return;
  }

  // --- keyboard navigation --------------------------------------------------------------------------------------
  function rows() {
    return Array.prototype.slice.call(queue.querySelectorAll("tr[data-alert-id]"));
  }

  function typing(target) {
    if (!target || !target.tagName) {
      return false;
    }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function focusRow(row) {
    var link = row.querySelector("a.alert-link");
    rows().forEach(function (r) { r.classList.remove("is-current"); });
    row.classList.add("is-current");
    if (link) {
      link.focus();
    }
    row.scrollIntoView({block: "nearest"});
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) {
      return;
    }
    var key = event.key;
    if (key !== "j" && key !== "k") {
      return;
    }
    var all = rows();
    if (!all.length) {
      return;
    }
    var current = all.findIndex(function (r) { return r.contains(document.activeElement); });
    if (current < 0) {
      current = all.findIndex(function (r) { return r.classList.contains("is-current"); });
    }
    var next;
    if (current < 0) {
      next = key === "j" ? 0 : all.length - 1;
    } else {
      next = Math.max(0, Math.min(all.length - 1, current + (key === "j" ? 1 : -1)));
    }
    event.preventDefault();
    focusRow(all[next]);
  });

  queue.addEventListener("focusin", function (event) {
    var row = event.target.closest ? event.target.closest("tr[data-alert-id]") : null;
    if (row) {
      rows().forEach(function (r) { r.classList.toggle("is-current", r === row); });
    }
  });

  // --- new alerts without a reload ------------------------------------------------------------------------------
  var streamUrl = queue.getAttribute("data-stream");
  if (!streamUrl || typeof window.EventSource !== "function") {
    return;
  }
  var live = document.getElementById("alerts-live");
  var banner = document.getElementById("alerts-new-banner");
  var bannerText = document.getElementById("alerts-new-count");
  var mode = queue.getAttribute("data-live-mode");  // "insert": rows go on top; "banner": say how many, reload
  var announce = queue.getAttribute("data-announce") || "{count}";
  var bannerTemplate = queue.getAttribute("data-banner") || "{count}";
  var pending = {};
  var pendingCount = 0;
  var MAX_ROWS = 500;  // an open queue in an alert storm stops growing: past this, new alerts are counted instead

  function say(text) {
    if (!live) {
      return;
    }
    // Emptied first, so the same words said twice are announced twice.
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function insertRows(html) {
    var body = queue.querySelector("tbody.alert-rows");
    if (!body) {
      return 0;
    }
    var holder = document.createElement("tbody");
    holder.innerHTML = html;  // rendered and escaped by the server's templates
    var fresh = Array.prototype.slice.call(holder.querySelectorAll("tr[data-alert-id]"));
    var added = 0;
    var empty = body.querySelector("tr.alerts-empty");
    if (empty && fresh.length) {
      empty.parentNode.removeChild(empty);
    }
    for (var i = fresh.length - 1; i >= 0; i--) {
      var row = fresh[i];
      var id = row.getAttribute("data-alert-id");
      var old = body.querySelector('tr[data-alert-id="' + CSS.escape(id) + '"]');
      if (old && old.getAttribute("data-last-seen") === row.getAttribute("data-last-seen")) {
        continue;  // shown already, as it is
      }
      if (old) {
        old.parentNode.removeChild(old);  // seen again since: it moves to the top
      }
      row.classList.add("is-new");
      body.insertBefore(row, body.firstChild);
      added += 1;
    }
    return added;
  }

  var source = new EventSource(streamUrl);
  source.addEventListener("alerts", function (event) {
    var message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    var count = 0;
    if (mode === "insert" && (message.more || rows().length >= MAX_ROWS)) {
      mode = "banner";  // more than one batch at once (a storm) or a page grown long: count them, offer a reload
    }
    if (mode === "insert") {
      count = insertRows(message.html || "");
    } else {
      (message.ids || []).forEach(function (id) {
        if (!pending[id]) {
          pending[id] = true;
          pendingCount += 1;
          count += 1;
        }
      });
      if (banner && pendingCount) {
        bannerText.textContent = bannerTemplate.replace("{count}", String(pendingCount));
        banner.hidden = false;
      }
    }
    if (count) {
      say(announce.replace("{count}", String(count)));
    }
  });
  source.addEventListener("error", function () {
    // The browser reconnects by itself (the stream ends every few minutes, or the server restarts); a refused
    // stream (signed out: 401) stays closed.
    if (source.readyState === EventSource.CLOSED) {
      queue.removeAttribute("data-live");
    }
  });
  queue.setAttribute("data-live", "on");
})();
