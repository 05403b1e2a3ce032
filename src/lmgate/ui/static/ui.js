// lmgate dashboard: draws the overview's charts (uPlot) and runs the logs page's live tail.
// Plain DOM code, no build step. Text from the server is only ever set as textContent.
(function () {
  "use strict";
  var WIDTH = { minute: 60, hour: 3600, day: 86400 };
  var COLOURS = ["#2459c7", "#c0392b", "#1e7d46", "#b7791f", "#7b3fb5", "#0f8a8a", "#d35400", "#5b6470"];

  function fmtMoney(v) {
    if (v == null) return "–";
    if (v === 0) return "$0";
    return "$" + (Math.abs(v) >= 0.01 ? v.toFixed(4) : v.toPrecision(3));
  }
  function fmtMs(v) {
    if (v == null) return "–";
    if (v === 0) return "0 ms";
    return v >= 10000 ? (v / 1000).toFixed(2) + " s" : v >= 10 ? Math.round(v) + " ms" : v.toFixed(v >= 1 ? 1 : 2) + " ms";
  }
  function axisMoney(v) { return v === 0 ? "$0" : "$" + (Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2)); }
  function fmtInt(v) { return v == null ? "–" : Math.round(v).toLocaleString("en-US"); }

  // every bucket from the first to the last (or the range's end), so empty buckets draw as 0
  function buckets(data) {
    var width = WIDTH[data.bucket], first = null, last = null;
    data.series.forEach(function (r) {
      if (first === null || r.bucket_start < first) first = r.bucket_start;
      if (last === null || r.bucket_start > last) last = r.bucket_start;
    });
    if (first === null) return [];
    if (data.since) first = Math.min(first, Math.floor(data.since / width) * width);
    var end = data.until || Date.now() / 1000;
    last = Math.max(last, Math.floor(end / width) * width);
    var xs = [];
    for (var t = first; t <= last && xs.length < 5000; t += width) xs.push(t);
    return xs;
  }

  function column(xs, rows, field, fill) {
    var at = {};
    rows.forEach(function (r) { at[r.bucket_start] = r[field]; });
    return xs.map(function (x) { return x in at && at[x] != null ? at[x] : fill; });
  }

  function chart(id, xs, series, fmt, axisFmt) {
    var el = document.getElementById(id);
    if (!el || !window.uPlot) return;
    var opts = {
      width: Math.max(320, el.clientWidth),
      height: 220,
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, fill: s.fill ? COLOURS[i % COLOURS.length] + "22" : undefined,
                 spanGaps: true, value: function (u, v) { return fmt(v); }, points: { show: xs.length < 40 } };
      })),
      // times are UTC, as on every page (the browser's zone would differ from the tables)
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      axes: [{}, { size: 72, values: function (u, vals) { return vals.map(axisFmt || fmt); } }],
      scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      legend: { live: true },
    };
    new uPlot(opts, [xs].concat(series.map(function (s) { return s.data; })), el);
    el.setAttribute("data-drawn", "1");
  }

  function overview() {
    var node = document.getElementById("chart-data");
    if (!node) return;
    var data = JSON.parse(node.textContent);
    var xs = buckets(data);
    if (!xs.length) return;
    chart("chart-spend", xs, [{ label: "spend", data: column(xs, data.series, "cost", 0), fill: true }], fmtMoney, axisMoney);
    chart("chart-requests", xs, [
      { label: "requests", data: column(xs, data.series, "requests", 0) },
      { label: "errors", data: column(xs, data.series, "errors", 0) },
    ], fmtInt);
    chart("chart-latency", xs, [
      { label: "p50", data: column(xs, data.series, "p50_ms", null) },
      { label: "p95", data: column(xs, data.series, "p95_ms", null) },
    ], fmtMs);
    var models = [];
    data.tokens_by_model.forEach(function (r) { var m = r.group || "(none)"; if (models.indexOf(m) < 0) models.push(m); });
    chart("chart-tokens", xs, models.map(function (m) {
      return { label: m, data: column(xs, data.tokens_by_model.filter(function (r) { return (r.group || "(none)") === m; }), "total_tokens", 0) };
    }), fmtInt);
  }

  // ---- the logs page's live tail: poll the API, put new calls on top ----
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function when(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"; }

  function liveTail() {
    var box = document.getElementById("live"), table = document.getElementById("logs");
    if (!box || !table) return;
    var admin = table.getAttribute("data-admin") === "1";
    var state = document.getElementById("live-state");
    var timer = null;
    function seen() {
      var ids = {};
      table.querySelectorAll("tbody tr").forEach(function (tr) { ids[tr.getAttribute("data-id")] = true; });
      return ids;
    }
    function row(r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-id", r.call_id);
      tr.className = "new" + (r.status !== "success" ? " fail" : "");
      cell(tr, when(r.start_time));
      cell(tr, r.model || "–");
      var st = cell(tr, r.status);
      if (r.error_class) { var e = document.createElement("span"); e.className = "err"; e.textContent = " " + r.error_class; st.appendChild(e); }
      if (admin) cell(tr, r.key_alias || (r.key_hash ? r.key_hash.slice(0, 12) + "…" : "–"));
      cell(tr, r.user_id || r.end_user || "–");
      cell(tr, fmtInt(r.total_tokens), "n");
      cell(tr, fmtMoney(r.cost), "n");
      cell(tr, fmtMs(r.latency_ms), "n");
      var td = document.createElement("td"), a = document.createElement("a");
      a.href = "/ui/logs/" + encodeURIComponent(r.call_id);
      a.className = "detail";
      a.textContent = r.call_id.slice(0, 8) + "…";
      td.appendChild(a);
      tr.appendChild(td);
      return tr;
    }
    function poll() {
      var url = table.getAttribute("data-api");
      url += (url.indexOf("?") < 0 ? "?" : "&") + "limit=50";
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (body) {
          var ids = seen(), body_ = table.querySelector("tbody"), fresh = body.rows.filter(function (r) { return !ids[r.call_id]; });
          for (var i = fresh.length - 1; i >= 0; i--) body_.insertBefore(row(fresh[i]), body_.firstChild);
          if (fresh.length) {
            table.classList.remove("hidden");
            var empty = document.getElementById("empty");
            if (empty) empty.remove();
          }
          state.textContent = "updated " + new Date().toLocaleTimeString();
        })
        .catch(function (err) { state.textContent = "paused: " + err.message; });
    }
    box.addEventListener("change", function () {
      if (box.checked) { poll(); timer = setInterval(poll, 2000); }
      else { clearInterval(timer); timer = null; state.textContent = ""; }
    });
  }

  overview();
  liveTail();
})();
