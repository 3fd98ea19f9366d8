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

  // A poll of the table sends the boxes checked when it left; boxes (un)checked while it
  // was on its way would be lost by the swap. Carry the operator's latest choice over.
  var checkedBeforeSwap = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (detail.target && detail.target.id === "agent-table" && detail.requestConfig &&
        detail.requestConfig.verb === "get") {
      checkedBeforeSwap = new Set(Array.prototype.map.call(
        detail.target.querySelectorAll("input[name='agent']:checked"),
        function (box) { return box.value; }));
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (checkedBeforeSwap === null) { return; }
    document.querySelectorAll("#agent-table input[name='agent']").forEach(function (box) {
      box.checked = checkedBeforeSwap.has(box.value);
    });
    checkedBeforeSwap = null;
    revealSelectAll(document);
  });

  document.addEventListener("DOMContentLoaded", function () { revealSelectAll(document); });
  document.addEventListener("htmx:load", function (event) { revealSelectAll(event.target); });
})();
