// Live refresh: reload the page every data-refresh seconds while it is visible. The pages
// work without it; the CSP allows only this file ('self'), never inline script.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!(seconds > 0)) {
    return;
  }
  var timer = null;
  function schedule() {
    if (timer !== null) {
      window.clearTimeout(timer);
    }
    timer = window.setTimeout(function () {
      if (document.visibilityState === "visible") {
        window.location.reload();
      } else {
        schedule();
      }
    }, seconds * 1000);
  }
  document.addEventListener("visibilitychange", schedule);
  schedule();
})();
