// The web console's only script: live run progress (server-sent events), a self-refreshing run
// list, confirmations and copy buttons. Plain JavaScript, no build step, nothing fetched from
// anywhere but this server (the console must work inside an air gap). Every page also works
// without it: the server renders the same state, a reload shows what is new.
"use strict";

(function () {
  var FINAL = { succeeded: true, failed: true, cancelled: true, expired: true };
  // Every event type a run's stream carries (docs/api.md); SSE delivers named events only to
  // listeners of their name.
  var TYPES = ["queued", "started", "progress", "retrying", "artifact_ready", "succeeded",
    "failed", "cancelled", "expired", "artifact_pushed", "artifact_push_failed"];

  function when(rfc3339) {
    // The same "YYYY-MM-DD HH:MM:SSZ" (UTC) the server renders.
    return rfc3339 ? rfc3339.replace("T", " ").slice(0, 19) + "Z" : "";
  }

  function sizeText(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  // Keep in step with views.describe_event (the server's words for the same events).
  function describe(ev) {
    var d = ev.data || {};
    switch (ev.type) {
      case "queued": return "profile " + d.profile + " r" + d.revision;
      case "started": return "attempt " + d.attempt + (d.takeover ? " (taken over)" : "");
      case "progress": return d.itemsCompleted + " of " + d.itemsTotal + " items (" + d.percent + " %)";
      case "retrying": return d.error ? d.error.code + ": " + (d.error.message || "") : "";
      case "artifact_ready": return d.name + " (" + sizeText(d.bytes) + ")";
      case "failed": return d.error ? d.error.code + ": " + (d.error.message || "") : "";
      case "artifact_pushed": return d.ref || "";
      case "artifact_push_failed": return (d.ref || "") + ": " + (d.error || "");
      case "expired": return d.reason || "";
      default: return "";
    }
  }

  function progressLabel(done, total, percent) {
    return total > 0 ? done + " of " + total + " items · " + Math.round(percent) + " %"
      : Math.round(percent) + " %";
  }

  function liveRun(root) {
    var status = document.getElementById("run-status");
    var bar = document.getElementById("run-progress");
    var label = document.getElementById("run-progress-label");
    var timeline = document.getElementById("timeline");
    var note = document.getElementById("live-note");
    var details = document.getElementById("run-details");
    if (root.getAttribute("data-terminal") === "true") { return; }
    var source = new EventSource(root.getAttribute("data-events"));

    function setStatus(value) {
      status.textContent = value;
      status.className = "badge s-" + value;
    }

    function setProgress(percent, done, total) {
      bar.value = percent;
      bar.textContent = percent + " %";
      label.textContent = progressLabel(done, total, percent);
    }

    function refreshDetails() {
      var request = new XMLHttpRequest();
      request.open("GET", root.getAttribute("data-summary"));
      request.setRequestHeader("X-Console-Fragment", "1");
      request.onload = function () {
        if (request.status === 200) {
          details.innerHTML = request.responseText;
        } else {
          note.textContent = "The run ended; reload the page to see its details.";
        }
      };
      request.send();
    }

    function onEvent(message) {
      var ev = JSON.parse(message.data);
      var item = document.createElement("li");
      item.className = "ev-" + ev.type;
      var time = document.createElement("time");
      time.setAttribute("datetime", ev.at);
      time.textContent = when(ev.at);
      var name = document.createElement("strong");
      name.textContent = ev.type;
      var text = document.createElement("span");
      text.textContent = describe(ev);
      item.append(time, " ", name, " ", text);
      timeline.appendChild(item);
      var d = ev.data || {};
      if (ev.type === "progress") { setProgress(d.percent, d.itemsCompleted, d.itemsTotal); }
      if (ev.type === "succeeded") { setProgress(100, 0, 0); }
      if (d.status) { setStatus(d.status); }
      if (FINAL[ev.type]) {
        source.close();
        note.textContent = "";
        document.getElementById("run-finished").textContent = when(ev.at);
        refreshDetails();
      }
    }

    TYPES.forEach(function (type) { source.addEventListener(type, onEvent); });
    source.onopen = function () { note.textContent = "Live: new events appear here."; };
    source.onerror = function () {
      // The browser reconnects by itself (resuming after the last event id) unless the stream
      // was refused; then say so rather than show a frozen page.
      note.textContent = source.readyState === EventSource.CLOSED
        ? "Live updates stopped (signed out, or the server went away): reload the page."
        : "Connection lost; reconnecting…";
    };
  }

  function liveRows(tbody) {
    var last = tbody.innerHTML;
    var stopped = false;
    function refresh() {
      if (stopped || document.visibilityState !== "visible") { return; }
      var request = new XMLHttpRequest();
      request.open("GET", tbody.getAttribute("data-src"));
      request.setRequestHeader("X-Console-Fragment", "1");
      request.onload = function () {
        if (request.status !== 200) { stopped = true; return; }
        if (request.responseText === last) { return; }
        // Keep the keyboard focus on the same run's link across the refresh.
        var focused = document.activeElement;
        var row = focused && focused.closest ? focused.closest("tr[data-key]") : null;
        var key = row ? row.getAttribute("data-key") : null;
        tbody.innerHTML = request.responseText;
        last = tbody.innerHTML;
        // The first run of an empty list: show the table instead of the empty state.
        var any = tbody.querySelector("tr") !== null;
        tbody.closest("table").hidden = !any;
        var empty = document.getElementById("runs-empty");
        if (empty) { empty.hidden = any; }
        if (key) {
          var again = tbody.querySelector("tr[data-key='" + key + "'] a");
          if (again) { again.focus(); }
        }
      };
      request.send();
    }
    window.setInterval(refresh, 2500);
  }

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button || !navigator.clipboard) { return; }
    var text = document.getElementById(button.getAttribute("data-copy")).textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "Copied";
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var run = document.getElementById("run-live");
    if (run) { liveRun(run); }
    var rows = document.getElementById("run-rows");
    if (rows) { liveRows(rows); }
  });
})();
