// The humpback review page: one pair at a time, verdicts by keyboard, each one saved before it shows.
// All text from the run goes through textContent (never innerHTML), so a pair cannot inject markup.
(function () {
  "use strict";
  var state = null;   // what /api/state returned; decisions and figures are refreshed by each verdict
  var current = 0;    // index of the pair shown
  var editing = false;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined) return "-";
    return Number.isInteger(x) ? String(x) : x.toFixed(digits === undefined ? 4 : digits);
  }
  function when(iso) {  // 2026-12-05T14:09:30+00:00 -> 2026-12-05 14:09 UTC
    return iso.slice(0, 10) + " " + iso.slice(11, 16) + (/\+00:00$/.test(iso) ? " UTC" : "");
  }
  function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(0) + "%"; }

  function setStatus(text, error) {
    var s = $("status");
    s.textContent = text;
    s.className = error ? "error" : "";
  }

  function api(method, url, body) {
    var opts = { method: method, headers: { "Content-Type": "application/json" } };
    if (body !== undefined) opts.body = JSON.stringify(body);
    return fetch(url, opts).catch(function () {
      throw new Error("no answer from the review server (stopped?); start it again and reload");
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
        return data;
      });
    });
  }

  function item() { return state.items[current]; }
  function decisionOf(it) { return state.decisions[it.id] || null; }

  function firstUndecided(from) {
    var n = state.items.length;
    for (var k = 0; k < n; k++) {
      var i = (from + k) % n;
      if (!decisionOf(state.items[i])) return i;
    }
    return -1;
  }

  function renderFigures() {
    $("progress").textContent = state.done + " of " + state.total + " decided";
    $("bar-fill").style.width = (state.total ? 100 * state.done / state.total : 0) + "%";
    var a = state.agreement;
    if (!a.pairs) {
      $("agreement").textContent = "judge-reviewer agreement: no decided pair with a judge's selection yet";
    } else {
      $("agreement").textContent = "judge-reviewer agreement " + a.agreeing + "/" + a.pairs + " = " + pct(a.agreement) +
        " (95% CI " + pct(a.agreement_ci[0]) + "-" + pct(a.agreement_ci[1]) + "); judge precision " +
        fmt(a.precision, 2) + ", recall " + fmt(a.recall, 2);
    }
    document.body.setAttribute("data-done", String(state.done));
    var strip = $("strip");
    strip.textContent = "";
    state.items.forEach(function (it, i) {
      var d = decisionOf(it);
      var chip = el("span", String(i + 1), (d ? d.verdict : "") + (i === current ? " current" : ""));
      chip.title = (i + 1) + ": " + (d ? d.verdict + " by " + d.reviewer : "not decided");
      chip.addEventListener("click", function () { show(i); });
      strip.appendChild(chip);
    });
  }

  function renderJudge(it) {
    var box = $("judge");
    box.textContent = "";
    (it.judge_lines || []).forEach(function (line, i) {
      box.appendChild(el("div", line, i === 0 ? "judge-line first" : "judge-line"));
    });
    if (it.principles) {
      var t = el("table");
      var head = el("tr");
      head.appendChild(el("th", "principle"));
      head.appendChild(el("th", "signed log-odds (> 0: has it)"));
      t.appendChild(head);
      it.principles.forEach(function (p) {
        var tr = el("tr");
        tr.appendChild(el("td", p.principle));
        tr.appendChild(el("td", fmt(p.log_odds, 2), "num"));
        t.appendChild(tr);
      });
      box.appendChild(t);
    }
    if (it.reasoning) {
      box.appendChild(el("div", "Reasoning:", "sub"));
      box.appendChild(el("div", it.reasoning, "text"));
    }
  }

  function show(i) {
    if (editing) closeEditor();
    current = Math.max(0, Math.min(state.items.length - 1, i));
    var it = item();
    var d = decisionOf(it);
    document.body.setAttribute("data-current", String(current));
    history.replaceState(null, "", "#" + (current + 1));
    var kept = it.kept === null ? el("span", "not selected yet", "badge unknown") :
      el("span", it.kept ? "judge kept it" : "judge dropped it", "badge " + (it.kept ? "kept" : "dropped"));
    var line = $("pairline");
    line.textContent = "Pair " + (current + 1) + " of " + state.items.length + " \u00b7 id " + it.id + " \u00b7 ";
    line.appendChild(kept);
    $("instruction").textContent = it.instruction;
    $("instruction").className = "text" + (d && d.verdict === "edit" ? " edited" : "");
    $("edited-block").hidden = !(d && d.verdict === "edit");
    $("edited").textContent = d && d.verdict === "edit" ? d.instruction : "";
    $("segment").textContent = it.output;
    $("judge-name").textContent = state.judge ? "(" + state.judge + ")" : "";
    renderJudge(it);
    var v = $("verdict");
    v.textContent = d ? ({accept: "accepted", reject: "rejected", edit: "edited"}[d.verdict] + " by " + d.reviewer +
                         ", " + when(d.time)) : "not decided";
    v.title = d ? d.verdict + " by " + d.reviewer + " at " + d.time : "";
    v.className = d ? d.verdict : "";
    v.setAttribute("data-verdict", d ? d.verdict : "");
    renderFigures();
  }

  function apply(progress) {
    state.decisions = progress.decisions;
    state.done = progress.done;
    state.total = progress.total;
    state.agreement = progress.agreement;
  }

  function decide(verdict, instruction) {
    var it = item();
    var body = { id: it.id, verdict: verdict };
    if (instruction !== undefined) body.instruction = instruction;
    setStatus("saving...");
    return api("POST", "/api/decisions", body).then(function (progress) {
      apply(progress);
      setStatus("saved " + verdict + " of pair " + (current + 1));
      var next = firstUndecided(current + 1);
      show(next === -1 ? current : next);
    }).catch(function (e) { setStatus("NOT saved: " + e.message, true); });
  }

  function undo() {
    var it = item();
    setStatus("withdrawing...");
    api("DELETE", "/api/decisions/" + encodeURIComponent(it.id)).then(function (progress) {
      apply(progress);
      setStatus("withdrew your decision on pair " + (current + 1));
      show(current);
    }).catch(function (e) { setStatus("NOT withdrawn: " + e.message, true); });
  }

  function openEditor() {
    var it = item();
    var d = decisionOf(it);
    editing = true;
    $("editor").hidden = false;
    var box = $("edit-box");
    box.value = d && d.verdict === "edit" ? d.instruction : it.instruction;
    box.focus();
    setStatus("editing the instruction");
  }
  function closeEditor() {
    editing = false;
    $("editor").hidden = true;
    $("edit-box").blur();
  }
  function saveEdit() {
    var text = $("edit-box").value;
    if (!text.trim()) { setStatus("an edit needs an instruction", true); return; }
    closeEditor();
    decide("edit", text);
  }

  document.addEventListener("keydown", function (ev) {
    if (!state) return;
    if (editing) {
      if (ev.key === "Escape") { closeEditor(); setStatus("edit cancelled"); ev.preventDefault(); }
      else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { saveEdit(); ev.preventDefault(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var key = ev.key.toLowerCase();
    var actions = {
      a: function () { decide("accept"); }, r: function () { decide("reject"); }, e: openEditor, u: undo,
      j: function () { show(current + 1); }, arrowright: function () { show(current + 1); },
      k: function () { show(current - 1); }, arrowleft: function () { show(current - 1); },
      n: function () { var i = firstUndecided(current + 1); if (i !== -1) show(i); }
    };
    if (actions[key]) { actions[key](); ev.preventDefault(); }
  });
  $("accept").addEventListener("click", function () { decide("accept"); });
  $("reject").addEventListener("click", function () { decide("reject"); });
  $("edit").addEventListener("click", openEditor);
  $("undo").addEventListener("click", undo);
  $("save-edit").addEventListener("click", saveEdit);
  $("cancel-edit").addEventListener("click", function () { closeEditor(); setStatus("edit cancelled"); });

  window.addEventListener("hashchange", function () {
    var n = parseInt((location.hash || "").slice(1), 10);
    if (state && n >= 1 && n <= state.items.length && n - 1 !== current) show(n - 1);
  });

  api("GET", "/api/state").then(function (s) {
    state = s;
    $("where").textContent = "\u00b7 " + s.description;
    $("where").title = s.description + " (" + s.run + ")";
    $("reviewer").textContent = "reviewer " + s.reviewer;
    document.title = "humpback review: iteration " + s.iteration;
    if (!s.items.length) { setStatus("this sample is empty", true); return; }
    var fromHash = parseInt((location.hash || "").slice(1), 10);
    var start = fromHash >= 1 && fromHash <= s.items.length ? fromHash - 1 : firstUndecided(0);
    show(start === -1 ? 0 : start);
    document.body.setAttribute("data-ready", "1");
  }).catch(function (e) { setStatus("could not load the sample: " + e.message, true); });
})();
