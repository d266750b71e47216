// The console's little JavaScript: live overview, the try-a-prediction form, a confirm on decisions.
"use strict";
(function () {
  function text(v) { return v === null || v === undefined ? "" : String(v); }
  function cell(tr, content) { var td = document.createElement("td"); if (content instanceof Node) td.appendChild(content); else td.textContent = text(content); tr.appendChild(td); }
  function link(href, label, cls) { var a = document.createElement("a"); a.href = href; a.textContent = label; if (cls) a.className = cls; return a; }
  function phase(p) { var s = document.createElement("span"); s.className = "phase phase-" + p; s.textContent = p; return s; }
  function pendingLinks(kind, r) { var f = document.createDocumentFragment(); (r.pending || []).forEach(function (v) { f.appendChild(link("/approvals/" + kind + "/" + r.namespace + "/" + r.name + "/" + v, "review v" + v, "pending")); }); return f; }

  function refreshOverview(el) {
    fetch(el.dataset.live, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) return;
        var md = document.querySelector("#deployments tbody"), rs = document.querySelector("#schedules tbody");
        md.textContent = ""; rs.textContent = "";
        d.deployments.forEach(function (r) {
          var tr = document.createElement("tr"); tr.dataset.key = r.namespace + "/" + r.name;
          cell(tr, r.namespace); cell(tr, link("/models/" + r.namespace + "/" + r.name, r.name)); cell(tr, r.model);
          cell(tr, phase(r.phase)); cell(tr, r.stable); cell(tr, r.canary); cell(tr, r.weight === null ? "" : r.weight + "%");
          cell(tr, r.analysis); cell(tr, r.drift === null ? "" : Number(r.drift).toPrecision(4)); cell(tr, pendingLinks("modeldeployments", r));
          md.appendChild(tr);
        });
        d.schedules.forEach(function (r) {
          var tr = document.createElement("tr"); tr.dataset.key = r.namespace + "/" + r.name;
          cell(tr, r.namespace); cell(tr, link("/schedules/" + r.namespace + "/" + r.name, r.name)); cell(tr, r.model);
          cell(tr, phase(r.phase)); cell(tr, r.lastRun); cell(tr, r.lastVersion); cell(tr, pendingLinks("retrainschedules", r));
          rs.appendChild(tr);
        });
        document.getElementById("md-count").textContent = d.deployments.length;
        document.getElementById("rs-count").textContent = d.schedules.length;
        el.textContent = "as of " + d.time + " (live)";
      })
      .catch(function () { el.textContent = "live updates paused (console unreachable)"; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelector("[data-live]");
    if (live) { setInterval(function () { refreshOverview(live); }, 5000); }
    var form = document.getElementById("predict");
    if (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var out = document.getElementById("predict-out");
        out.textContent = "…";
        fetch(form.dataset.url, { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json" }, body: form.body.value })
          .then(function (r) { return r.text(); }).then(function (t) { out.textContent = t; })
          .catch(function (err) { out.textContent = String(err); });
      });
    }
    var decide = document.getElementById("decide");
    if (decide) {
      decide.addEventListener("submit", function (e) {
        var b = e.submitter;
        if (b && !window.confirm(b.textContent + "?")) { e.preventDefault(); }
      });
    }
  });
})();
