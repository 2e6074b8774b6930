// Sorting and filtering for the leaderboard tables. Plain JavaScript, no libraries.
// Without JavaScript the tables are complete and readable; this only adds controls.
"use strict";
(function () {
  function key(td, numeric) {
    var v = td ? td.getAttribute("data-v") : "";
    if (v === null || v === "") return null;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(table, col, th) {
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // missing values always last
      if (y === null) return -1;
      return x < y ? -dir : x > y ? dir : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function addFilter(table) {
    var box = document.createElement("input");
    box.type = "search";
    box.placeholder = "Filter rows (method, tier, model...)";
    box.className = "filter";
    box.setAttribute("aria-label", "Filter the rows of " + (table.caption ? table.caption.textContent : "this table"));
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
    table.parentNode.insertBefore(box, table);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      if (th.classList.contains("nosort")) return;
      th.tabIndex = 0;
      th.title = "Sort by this column";
      th.addEventListener("click", function () { sortBy(table, col, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, col, th); });
    });
    if (table.classList.contains("board")) addFilter(table);
  });
})();
