/* Shared by the pages: words, CSRF-carrying POSTs, copying, the server-push stream. No framework, no storage:
   nothing personal is kept anywhere but in the page's DOM while it is shown. */
"use strict";
const Office = (() => {
  const words = JSON.parse(document.getElementById("words").textContent || "{}");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value; else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function post(url, body) {
    const response = await fetch(url, { method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body || {}) });
    if (response.status === 401) { window.location.assign("/login"); throw new Error("session"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || String(response.status));
    return data;
  }

  async function get(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) { window.location.assign("/login"); throw new Error("session"); }
    if (!response.ok) throw new Error(String(response.status));
    return response.json();
  }

  async function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* fall back below */ }
    }
    const area = el("textarea", { "aria-hidden": "true", readonly: true });
    area.value = text;
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.append(area);
    area.select();
    let done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    area.value = "";
    area.remove();
    return done;
  }

  function ago(seconds) {
    const lang = document.documentElement.lang;
    const s = Math.max(0, Math.round(seconds));
    let text;
    if (s < 60) text = lang === "vi" ? `${s} giây` : `${s} s`;
    else if (s < 3600) text = lang === "vi" ? `${Math.floor(s / 60)} phút` : `${Math.floor(s / 60)} min`;
    else if (s < 86400) text = lang === "vi" ? `${Math.floor(s / 3600)} giờ` : `${Math.floor(s / 3600)} h`;
    else text = lang === "vi" ? `${Math.floor(s / 86400)} ngày` : `${Math.floor(s / 86400)} d`;
    return lang === "vi" ? `${words.ui.read_ago} ${text}` : `${words.ui.read_ago} ${text} ${words.ui.ago}`;
  }

  function stream(url, handlers) {
    const indicator = document.getElementById("connection");
    const source = new EventSource(url);
    source.onopen = () => { indicator.hidden = true; if (handlers.open) handlers.open(); };
    source.onerror = () => { indicator.hidden = false; };
    for (const [name, handler] of Object.entries(handlers)) {
      if (name === "open") continue;
      source.addEventListener(name, (event) => handler(JSON.parse(event.data || "{}")));
    }
    source.addEventListener("expired", () => { source.close(); window.location.assign("/login"); });
    return source;
  }

  function typing(event) {
    const target = event.target;
    return target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
  }

  return { words, csrf, el, post, get, copy, ago, stream, typing };
})();
