// Berth's console: the one script, served from the binary. Pages work without it; it adds
// line numbers to the policy editors and the engine's lint findings as the text is typed
// (POST /console/api/lint with the session's CSRF token), each finding a link that puts
// the cursor at its line and column.
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  document.querySelectorAll(".code-editor").forEach(function (box) {
    var area = box.querySelector("textarea");
    var gutter = box.querySelector(".gutter");
    var live = document.getElementById(area.getAttribute("aria-describedby"));
    var kind = area.getAttribute("data-lint");
    var lines = -1;
    function number() {
      var n = area.value.split("\n").length;
      if (n !== lines) {
        lines = n;
        var out = [];
        for (var i = 1; i <= n; i++) out.push(i);
        gutter.textContent = out.join("\n");
      }
      gutter.scrollTop = area.scrollTop;
    }
    function goTo(line, column) {
      var rows = area.value.split("\n");
      var at = 0;
      for (var i = 0; i < line - 1 && i < rows.length; i++) at += rows[i].length + 1;
      at += Math.max(0, column - 1);
      area.focus();
      area.setSelectionRange(at, at);
    }
    function show(findings) {
      live.textContent = "";
      if (findings.length === 0) {
        var ok = document.createElement("p");
        ok.className = "ok";
        ok.textContent = "Lint: no findings.";
        live.appendChild(ok);
        return;
      }
      var list = document.createElement("ul");
      list.className = "findings";
      findings.forEach(function (f) {
        var item = document.createElement("li");
        item.className = "finding " + f.type.toLowerCase();
        var where = document.createElement("a");
        where.href = "#policy";
        where.className = "where";
        where.textContent = "line " + f.line + ", column " + f.column;
        where.addEventListener("click", function (e) {
          e.preventDefault();
          goTo(f.line, f.column);
        });
        var what = document.createElement("strong");
        what.textContent = " " + f.type + " ";
        item.appendChild(where);
        item.appendChild(what);
        item.appendChild(document.createTextNode(f.code + ": " + f.details));
        list.appendChild(item);
      });
      live.appendChild(list);
    }
    var timer = null;
    var asked = 0;
    function lint() {
      var mine = ++asked;
      var body = new URLSearchParams();
      body.set("kind", kind);
      body.set("text", area.value);
      fetch("/console/api/lint", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf },
        body: body,
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) { if (j && mine === asked) show(j.findings); })
        .catch(function () {});
    }
    area.addEventListener("input", function () {
      number();
      if (!kind) return;
      clearTimeout(timer);
      timer = setTimeout(lint, 250);
    });
    area.addEventListener("scroll", number);
    number();
    if (kind && area.value.trim() !== "") lint();
  });
})();
