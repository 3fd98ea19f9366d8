// Small enhancements beyond htmx. Everything works without this file.
(function () {
  "use strict";

  // "Select all" in the agent table: shown only when JavaScript runs.
  function revealSelectAll(root) {
    root.querySelectorAll(".js-select-all").forEach(function (box) {
      box.hidden = false;
      var boxes = document.querySelectorAll("#agent-table input[name='agent']");
      var checked = document.querySelectorAll("#agent-table input[name='agent']:checked");
      box.checked = boxes.length > 0 && boxes.length === checked.length;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches(".js-select-all")) {
      document.querySelectorAll("#agent-table input[name='agent']").forEach(function (box) {
        box.checked = target.checked;
      });
    }
  });

  document.addEventListener("DOMContentLoaded", function () { revealSelectAll(document); });
  document.addEventListener("htmx:load", function (event) { revealSelectAll(event.target); });
})();
