// retouchd web interface: one small script, no build step. Pages render on the server; the dashboard
// renders from server-sent events; actions POST to the JSON API with the page's CSRF token.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const page = document.body.dataset.page;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) =>
    ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  function flash(text, bad) {
    const el = $("#flash");
    el.textContent = text;
    el.className = bad ? "bad" : "good";
  }

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: body ? JSON.stringify(body) : "{}",
    });
    let data = {};
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) throw new Error(data.error || res.statusText);
    return data;
  }

  async function act(button) {
    const id = button.dataset.job, action = button.dataset.action;
    const scope = button.parentElement.closest("[data-job]") || document;  // the item, not the button
    let body = null;
    if (action === "reject") {
      const input = $(".reason", scope);
      let reason = input ? input.value.trim() : "";
      if (!reason) reason = (window.prompt("Why is this result rejected?") || "").trim();
      if (!reason) { flash("A reason is needed to reject.", true); return; }
      body = {reason: reason};
    }
    button.disabled = true;
    try {
      const job = await post(`/api/jobs/${id}/${action}`, body);
      flash(`#${id}: ${action} done (now ${job.state}${job.review ? ", " + job.review : ""})`);
      const item = button.closest(".review-item, tr[data-job]");
      if (item && (page === "review" || page === "failures")) {
        const next = item.nextElementSibling;
        item.remove();
        if (next && next.focus) next.focus();
      } else if (page === "job") {
        window.setTimeout(() => window.location.reload(), 400);
      }
    } catch (err) {
      flash(`#${id}: ${err.message}`, true);
      button.disabled = false;
    }
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button) { ev.preventDefault(); act(button); }
    const inbox = ev.target.closest("button[data-inbox]");
    if (inbox) {
      ev.preventDefault();
      post(`/api/inboxes/${encodeURIComponent(inbox.dataset.inbox)}/${inbox.dataset.op}`)
        .then((r) => { flash(`inbox ${r.rule} ${r.paused ? "paused" : "resumed"}`); refresh(); })
        .catch((err) => flash(err.message, true));
    }
  });

  // Forms that POST (log out) carry the CSRF token as a header via fetch.
  $$("button[data-csrf-form]").forEach((b) => b.addEventListener("click", (ev) => {
    ev.preventDefault();
    fetch(b.form.action, {method: "POST", headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"})
      .then(() => { window.location.href = "/login"; });
  }));

  // -- review queue: keyboard shortcuts --------------------------------------------------------------------
  if (page === "review") {
    const items = () => $$(".review-item");
    const current = () => document.activeElement.closest && document.activeElement.closest(".review-item");
    if (items().length) items()[0].focus();
    document.addEventListener("keydown", (ev) => {
      if (ev.target.matches("input, textarea")) {
        if (ev.key === "Enter" && ev.target.classList.contains("reason")) {
          act($('button[data-action="reject"]', ev.target.closest(".review-item")));
        }
        return;
      }
      const item = current() || items()[0];
      if (!item) return;
      if (ev.key === "j" || ev.key === "k") {
        const sib = ev.key === "j" ? item.nextElementSibling : item.previousElementSibling;
        if (sib) sib.focus();
      } else if (ev.key === "a") {
        act($('button[data-action="approve"]', item));
      } else if (ev.key === "r") {
        ev.preventDefault();
        const input = $(".reason", item);
        if (input.value.trim()) act($('button[data-action="reject"]', item)); else input.focus();
      } else if (ev.key === "o") {
        window.location.href = `/jobs/${item.dataset.job}`;
      }
    });
  }

  // -- job page: before/after viewer -------------------------------------------------------------------
  if (page === "job" && $("#viewer")) {
    const viewer = $("#viewer");
    const split = $("#split"), slider = $("#slider");
    const setSplit = () => { slider.style.setProperty("--split", split.value); };
    split.addEventListener("input", setSplit);
    setSplit();
    $("#zoom").addEventListener("input", (ev) => {
      $("#stage").style.setProperty("--zoom", ev.target.value / 100);
      $("#zoom-out").textContent = ev.target.value + "%";
    });
    const modes = $$(".toolbar button[data-mode]", viewer);
    modes.forEach((b) => b.addEventListener("click", () => {
      modes.forEach((o) => o.classList.toggle("on", o === b));
      $$(".mode", viewer).forEach((m) => { m.hidden = !m.classList.contains("mode-" + b.dataset.mode); });
      if (b.dataset.mode === "diff") drawDiff();
    }));
    function load(src) {
      return new Promise((ok, fail) => { const i = new Image(); i.onload = () => ok(i); i.onerror = fail; i.src = src; });
    }
    async function drawDiff() {
      const [a, b] = await Promise.all([load(viewer.dataset.before), load(viewer.dataset.after)]);
      const w = b.naturalWidth, h = b.naturalHeight, canvas = $("#diff");
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(a, 0, 0, w, h);
      const before = ctx.getImageData(0, 0, w, h);
      ctx.drawImage(b, 0, 0, w, h);
      const after = ctx.getImageData(0, 0, w, h);
      const out = ctx.createImageData(w, h);
      for (let i = 0; i < out.data.length; i += 4) {
        const d = Math.abs(after.data[i] - before.data[i]) + Math.abs(after.data[i + 1] - before.data[i + 1])
          + Math.abs(after.data[i + 2] - before.data[i + 2]);
        const v = Math.min(255, d * 2);
        out.data[i] = v; out.data[i + 1] = v; out.data[i + 2] = v; out.data[i + 3] = 255;
      }
      ctx.putImageData(out, 0, 0);
    }
  }

  // -- dashboard: live from server-sent events ---------------------------------------------------------
  function pct(x) { return x == null ? "–" : (100 * x).toFixed(1) + " %"; }
  function num(x, d) { return x == null ? "–" : Number(x).toFixed(d == null ? 2 : d); }
  function bytes(n) { return n == null ? "" : (n / 2 ** 30).toFixed(1) + " GiB"; }
  function rows(sel, html) { $(sel + " tbody").innerHTML = html || `<tr><td colspan="9" class="none">none</td></tr>`; }

  function render(s) {
    const t = s.throughput || {};
    const q = s.queue || {};
    const total = (state) => Object.values(q).reduce((n, c) => n + (c[state] || 0), 0);
    $("#cards").innerHTML = [
      ["queued", total("queued")], ["running", total("running")], ["last 5 min", t.last_5_min],
      ["last hour", t.last_hour], ["failed last hour", t.failed_last_hour],
      ["to review", (s.stats.rules || []).reduce((n, r) => n + r.pending_review, 0)],
    ].map(([k, v]) => `<div class="card"><b>${esc(v)}</b><span>${esc(k)}</span></div>`).join("");
    const pending = {};
    (s.stats.rules || []).forEach((r) => { pending[r.rule] = r.pending_review; });
    rows("#inboxes", (s.inboxes || []).map((i) => {
      const c = q[i.rule] || {};
      const op = i.paused ? "resume" : "pause";
      return `<tr data-rule="${esc(i.rule)}"><td>${esc(i.rule)}</td><td class="num">${c.queued || 0}</td>
        <td class="num">${c.running || 0}</td><td class="num">${(c.done || 0) + (c.review || 0) + (c.archived || 0)}</td>
        <td class="num">${pending[i.rule] || 0}</td><td class="num">${c.failed || 0}</td>
        <td class="inbox-state">${i.paused ? "paused" : "active"}</td>
        <td><button data-inbox="${esc(i.rule)}" data-op="${op}">${op === "pause" ? "Pause" : "Resume"}</button></td></tr>`;
    }).join(""));
    rows("#running", (s.running || []).map((j) => `<tr><td><a href="/jobs/${j.id}">#${j.id}</a></td>
      <td>${esc(j.rule)}</td><td class="path">${esc(j.path)}</td><td>${esc(j.step)}</td>
      <td>${j.total ? `${j.done}/${j.total} tiles` : pct(j.progress)}</td><td>${esc(j.device)} ${esc(j.host)}</td>
      <td class="num">${num(j.seconds, 1)} s</td></tr>`).join(""));
    const per = t.per_minute || [], max = Math.max(1, ...per);
    $("#throughput").innerHTML = per.map((n, i) =>
      `<span title="${n} result(s), ${per.length - 1 - i} min ago" style="height:${(100 * n) / max}%"></span>`).join("");
    rows("#devices", (s.devices || []).map((d) => `<tr><td>${esc(d.host)}</td><td>${esc(d.device)}</td>
      <td class="num">${d.busy}/${d.slots}</td><td>${bytes(d.memory_used)} / ${bytes(d.memory_total)}</td></tr>`).join(""));
    // Each rule's variants right under its "all" row, so an experiment's arms sit together.
    const st = (s.stats.rules || []).flatMap((r) => [r].concat((s.stats.variants || []).filter((v) => v.rule === r.rule)));
    rows("#stats", st.map((r) => `<tr><td>${esc(r.rule)}</td><td>${esc(r.variant || "all")}</td>
      <td class="num">${r.done}</td><td class="num">${r.approved}</td><td class="num">${r.rejected}</td>
      <td class="num">${r.pending_review}</td><td class="num">${pct(r.reject_rate)}</td>
      <td class="num">${num(r.device_seconds_per_image)}</td><td class="num">${num(r.device_seconds_per_approved)}</td></tr>`).join(""));
    rows("#recent-failures", (s.recent_failures || []).map((f) => `<tr><td><a href="/jobs/${f.id}">#${f.id}</a></td>
      <td>${esc(f.rule)}</td><td class="path">${esc(f.path)}</td><td>${esc(f.step)}</td>
      <td class="error">${esc(f.error)}</td></tr>`).join(""));
  }

  function refresh() {
    if (page !== "dashboard") return;
    fetch("/api/status", {credentials: "same-origin"}).then((r) => r.json()).then(render);
  }

  if (page === "dashboard") {
    render(JSON.parse($("#initial").textContent));
    const source = new EventSource("/events");
    source.addEventListener("status", (ev) => { $("#live").classList.add("on"); render(JSON.parse(ev.data)); });
    source.onerror = () => $("#live").classList.remove("on");
  }
})();
