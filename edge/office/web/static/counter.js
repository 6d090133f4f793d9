/* The counter page: the terminal's last result (masked), pushed as it arrives; reveal (audited), copy,
   the desk read with its progress, and in the demo the virtual cards. */
"use strict";
(() => {
  const { words, el, post, get, copy, ago, stream, typing } = Office;
  const page = JSON.parse(document.getElementById("page").textContent);
  const base = page.base;  // /counter/T on a ward's server, /counter/W/T on a province's
  const $ = (id) => document.getElementById(id);
  const icons = { ok: "\u2714", unproven: "!", failed: "\u2716", waiting: "\u2026" };
  let current = null;        // the masked view shown
  let revealed = null;       // the revealed values, only while shown
  let pendingRequest = null; // the desk read under way

  function renderBanner(view, fresh) {
    const banner = $("banner");
    const b = view.banner;
    banner.className = `banner ${b.style}` + (fresh ? " fresh" : "");
    banner.dataset.verdict = b.verdict;
    banner.dataset.result = view.key.jti;
    banner.dataset.received = String(view.received);
    $("banner-icon").textContent = icons[b.style];
    $("banner-title").textContent = b.title;
    $("banner-sub").textContent = document.documentElement.lang === "vi" ? b.words.en : b.words.proves;
    tick();
  }

  function tick() {
    if (!current) return;
    const seconds = Date.now() / 1000 - current.completed_at;
    $("banner-meta").textContent = `${ago(seconds)} · ${current.card} · #${current.seq}`;
  }

  function renderNote(view) {
    const note = $("request-note");
    const aa = view.active_auth;
    if (!view.request_id) { note.hidden = true; return; }
    note.hidden = false;
    const answered = words.ui.request_answered;
    if (aa && aa.status === "passed") { note.className = "note good"; note.textContent = `${answered}: ${words.ui.aa_passed}`; }
    else if (aa && aa.status === "failed") { note.className = "note bad"; note.textContent = `${answered}: ${words.ui.aa_failed}`; }
    else { note.className = "note"; note.textContent = `${answered}` + (aa ? `: ${words.ui.aa_absent}` : ""); }
    for (const flag of view.flags) {
      const text = words.ui[`flag_${flag}`];
      if (text) note.append(el("span", { class: "bad", text: ` · ${text}` }));
    }
  }

  function renderFields() {
    const body = $("fields").querySelector("tbody");
    body.replaceChildren();
    const values = revealed ? new Map(revealed.fields.map((f) => [f.name, f.value])) : null;
    for (const field of current.fields) {
      const value = values ? values.get(field.name) : null;
      const cell = el("td", { class: value === null || value === undefined ? "value masked" : "value",
                              "data-field": field.name, text: value ?? field.masked });
      const address = revealed && revealed.addresses[field.name];
      if (address) cell.append(unitsLine(address.mapping));
      const copyCell = el("td", { class: "copy" });
      if (value !== null && value !== undefined) {
        const button = el("button", { type: "button", "data-copy": field.name, text: words.ui.copy });
        button.addEventListener("click", () => copied(button, copy(value)));
        copyCell.append(button);
      }
      body.append(el("tr", {}, el("th", { scope: "row", text: field.label }), cell, copyCell));
    }
    $("copy-all").hidden = !revealed;
    $("hide").hidden = !revealed;
    $("reveal-form").hidden = Boolean(revealed);
    const photo = $("photo");
    if (revealed && revealed.photo_jpeg_b64) { photo.src = `data:image/jpeg;base64,${revealed.photo_jpeg_b64}`; photo.hidden = false; }
    else { photo.removeAttribute("src"); photo.hidden = true; }
  }

  function unitsLine(mapping) {
    const lang = document.documentElement.lang;
    const names = [];
    if (mapping.confidence === "exact" && mapping.commune) names.push(mapping.commune.name);
    if (mapping.confidence === "split") names.push(mapping.candidates.map((u) => u.name).join(" / "));
    if (mapping.province) names.push(mapping.province.name);
    const label = { exact: lang === "vi" ? "Đơn vị hành chính hiện nay" : "Today's units",
                    split: lang === "vi" ? "Đã chia tách, một trong" : "Split, one of",
                    unknown: lang === "vi" ? "Chưa xác định được đơn vị mới" : "Today's units unknown" }[mapping.confidence];
    return el("span", { class: `units ${mapping.confidence}`, "data-confidence": mapping.confidence,
                        text: `${label}: ${names.join(", ") || "—"}` });
  }

  async function copied(button, promise) {
    const ok = await promise;
    const mark = el("span", { class: "copied", role: "status", text: ok ? ` ${words.ui.copied}` : "" });
    button.after(mark);
    setTimeout(() => mark.remove(), 1500);
  }

  function renderChecks(view) {
    const list = $("checks");
    list.replaceChildren();
    let passed = 0;
    for (const check of view.checks) {
      if (check.status === "passed") passed += 1;
      const mark = { passed: "\u2714", failed: "\u2716" }[check.status] || "\u2013";
      list.append(el("li", { class: check.status, "data-check": check.name },
        el("span", { "aria-hidden": "true", text: mark }),
        el("span", { text: `${check.label}: ${words.statuses[check.status] || check.status}` }),
        el("span", { class: "reason", text: check.reason })));
    }
    $("checks-summary").textContent = `${words.ui.checks} (${passed}/${view.checks.length})`;
    $("checks-box").hidden = false;
    $("checks-box").open = view.banner.style !== "ok";
  }

  function show(view, fresh) {
    if (!view) return;
    current = view;
    revealed = null;
    renderBanner(view, fresh);
    renderNote(view);
    $("citizen").hidden = view.fields.length === 0;
    renderFields();
    renderChecks(view);
    if (pendingRequest && view.request_id === pendingRequest) {
      progress(words.progress.result, "good");
      finishRequest();
    }
  }

  $("reveal-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    try {
      revealed = await post(`${base}/reveal`, { iss: current.key.iss, jti: current.key.jti, reason: $("reveal-reason").value });
      renderFields();
      $("copy-all").focus();
    } catch (e) { alert(words.ui.error); }
  });
  $("hide").addEventListener("click", () => { revealed = null; renderFields(); $("reveal-reason").focus(); });
  $("copy-all").addEventListener("click", () => {
    if (!revealed) return;
    const labels = new Map(current.fields.map((f) => [f.name, f.label]));
    const text = revealed.fields.map((f) => `${labels.get(f.name) || f.name}: ${f.value}`).join("\n");
    copied($("copy-all"), copy(text));
  });

  // --- the desk read ---------------------------------------------------------------------------------------------
  function progress(text, kind) {
    const list = $("progress");
    if (!list) return;
    list.append(el("li", { class: kind || "", text }));
  }
  function finishRequest() {
    pendingRequest = null;
    if ($("can")) $("can").value = "";  // the CAN is part of the ID number: not left in the form
    if ($("cancel-read")) $("cancel-read").disabled = true;
    if ($("read-card")) $("read-card").disabled = false;
  }
  if (page.desk) {
    $("read-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      $("progress").replaceChildren();
      $("read-card").disabled = true;
      try {
        const answer = await post(`${base}/read`, { can: $("can").value, profile: $("profile").value,
                                                    include_photo: $("include-photo").checked });
        pendingRequest = answer.request_id;
        $("cancel-read").disabled = false;
        progress(words.progress.sent);
      } catch (e) {
        progress(`${words.ui.error} (${e.message})`, "bad");
        $("read-card").disabled = false;
      }
    });
    $("cancel-read").addEventListener("click", async () => {
      try { await post(`${base}/cancel`, { request_id: pendingRequest }); } catch (e) { progress(words.ui.error, "bad"); }
    });
  }

  function onProgress(data) {
    if (!pendingRequest) return;
    const id = data.request_id || data.jti;
    if (id !== pendingRequest) return;  // another read's news (a QR shown meanwhile, an older request)
    const text = words.progress[data.event];
    if (!text) return;
    const final = ["command_rejected", "busy", "read_failed", "read_refused", "timeout", "cancelled", "card_removed"];
    if (data.event === "result") return;  // the result itself closes the request
    progress(text, final.includes(data.event) ? "bad" : "");
    if (final.includes(data.event) && data.event !== "read_failed" && data.event !== "card_removed") finishRequest();
  }

  function onStatus(data) {
    const chip = $("terminal-state");
    const offline = data.state !== "online";
    chip.className = offline ? "chip offline" : "chip";
    chip.textContent = offline ? words.ui.offline : (words.states[data.terminal_state] || data.terminal_state || "");
    if (pendingRequest && ["wait_card", "reading", "verifying"].includes(data.terminal_state)) {
      const text = words.states[data.terminal_state];
      const items = $("progress").querySelectorAll("li");
      if (!items.length || items[items.length - 1].textContent !== text) progress(text);
    }
  }

  // --- the demo's virtual cards ----------------------------------------------------------------------------------
  if (page.demo) {
    const tap = (card) => post("/demo/tap", { card }).catch(() => alert(words.ui.error));
    for (const button of document.querySelectorAll("button.tap")) button.addEventListener("click", () => tap(button.dataset.card));
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.altKey || event.ctrlKey || event.metaKey) return;
      const card = page.demo.cards[Number(event.key) - 1];
      if (card) { event.preventDefault(); tap(card); }
    });
  }

  stream(`${base}/stream`, {
    open: () => get(`${base}/latest`).then((view) => { if (view && (!current || view.key.jti !== current.key.jti)) show(view, false); }),
    result: (view) => show(view, true),
    resync: () => get(`${base}/latest`).then((view) => show(view, false)),
    progress: onProgress,
    status: onStatus,
  });
  setInterval(tick, 1000);
})();
