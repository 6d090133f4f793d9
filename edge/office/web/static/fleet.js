/* The fleet page: every terminal, problems first; refreshed whenever a status or a result is pushed. */
"use strict";
(() => {
  const { words, el, get, stream } = Office;
  const lang = document.documentElement.lang;
  const problemWords = {
    offline: [words.ui.offline, words.ui.offline], fault: ["Lỗi thiết bị", "device fault"],
    cert_expiring: ["Chứng thư sắp hết hạn", "certificate expiring"], reader: ["Mất đầu đọc", "reader missing"],
    camera: ["Mất camera", "camera missing"], storage_full: ["Hết dung lượng", "disk full"],
    outbox_full: ["Hàng đợi đầy", "outbox full"], clock: ["Đồng hồ chưa đồng bộ", "clock not synchronised"],
    queued: ["Kết quả chờ gửi", "results waiting"],
  };
  const serious = new Set(["offline", "fault", "cert_expiring", "reader", "camera", "storage_full", "outbox_full"]);
  // Results the terminal still holds: not yet at the broker, and (beside) at the broker but not yet confirmed stored.
  const waiting = (row) => (row.queued ?? "—") + (row.awaiting_receipt ? ` + ${row.awaiting_receipt} ${words.ui.awaiting_receipt}` : "");
  const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB") : "—");

  async function refresh() {
    const data = await get("/fleet/data");
    const body = document.getElementById("fleet-rows");
    body.replaceChildren();
    if (!data.terminals.length) body.append(el("tr", {}, el("td", { colspan: "10", text: words.ui.no_terminals })));
    for (const row of data.terminals) {
      const level = row.problems.some((p) => serious.has(p)) ? "problem" : row.problems.length ? "attention" : "fine";
      const online = row.state === "online";
      const problems = row.problems.map((p) => (problemWords[p] || [p, p])[lang === "vi" ? 0 : 1]).join(", ");
      const link = el("a", { href: row.counter, text: data.wards ? `${row.terminal} \u00B7 ${row.ward}` : row.terminal });
      body.append(el("tr", { class: level, "data-terminal": row.terminal, "data-state": row.state },
        el("td", {}, link),
        el("td", { class: online ? "state-online" : "state-offline",
                   text: online ? `\u25CF ${words.ui.online}` : `\u25CB ${words.ui.offline}` }),
        el("td", { text: problems || `\u2714 ${words.ui.no_problem}` }),
        el("td", { class: "indicator", "data-indicator": online ? row.indicator : null,
                   title: online ? (words.states[row.terminal_state] || row.terminal_state) : null,
                   text: online ? (words.indicators[row.indicator] || row.indicator || "—") : "—" }),
        el("td", { text: row.reader || "—" }), el("td", { text: row.camera || "—" }),
        el("td", { class: "queued", text: waiting(row) }), el("td", { text: when(row.last_result) }),
        el("td", { text: row.cert_expiry ? new Date(row.cert_expiry * 1000).toLocaleDateString(lang === "vi" ? "vi-VN" : "en-GB") : "—" }),
        el("td", { text: row.version || "—" })));
    }
    document.getElementById("fleet").dataset.updated = String(Date.now());
  }

  let pending = null;
  const soon = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 150); };
  stream("/fleet/stream", { open: soon, status: soon, result: soon, resync: soon });
  setInterval(refresh, 30000);
})();
