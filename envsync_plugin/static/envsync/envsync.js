// envsync's small client side: htmx does the work; nothing here is required for the pages to function.
(function () {
  "use strict";
  // "Close" on a diff: empty its panel (without JavaScript the link reloads the tab without it).
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-envsync-close]");
    if (!link) { return; }
    var panel = document.querySelector(link.getAttribute("data-envsync-close"));
    if (!panel) { return; }
    event.preventDefault();
    panel.innerHTML = "";
  });
  // A diff loaded by htmx gets the focus, so keyboard and screen-reader users land on it.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "envsync-diff") {
      event.detail.target.focus({ preventScroll: true });
    }
  });
})();
