// bk console: keeps a live page current without reloading it. Every 2 s, while
// <main data-live="true">, the page is fetched again and <main>'s content swapped in; skipped
// while the reader's focus is inside <main>, so keyboard users keep their place. Served as a
// file (not inline) so the Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;

  function say(id, text) {
    var element = document.getElementById(id);
    if (element) element.textContent = text;
  }

  function schedule() {
    window.setTimeout(refresh, INTERVAL_MS);
  }

  function refresh() {
    var main = document.getElementById("content");
    if (!main || main.getAttribute("data-live") !== "true") return;
    var focused = document.activeElement;
    if (focused && focused !== main && main.contains(focused)) {
      schedule();
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        if (text === null) return;
        var next = new DOMParser().parseFromString(text, "text/html").getElementById("content");
        if (next) {
          main.innerHTML = next.innerHTML;
          main.setAttribute("data-live", next.getAttribute("data-live"));
        }
        say("updated", "Updated " + new Date().toLocaleTimeString());
        say("alert", "");
        schedule();
      })
      .catch(function (error) {
        say("alert", "Could not refresh (" + error.message + "); retrying.");
        schedule();
      });
  }

  schedule();
})();
