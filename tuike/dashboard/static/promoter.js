// A promoter's own page: polls /p/{promoter}/data with the signed link's exp and sig every 5 s.
"use strict";
const STATUSES = ["pending", "confirmed", "held", "settled"];

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function table(target, data) {
  const t = el("table", {"data-rows": data.rows.length});
  const head = el("tr");
  data.columns.forEach((c) => head.appendChild(el("th", {}, c)));
  t.appendChild(head);
  data.rows.forEach((row) => {
    const tr = el("tr");
    row.forEach((v, i) => tr.appendChild(el("td", {"data-col": data.columns[i]}, v)));
    t.appendChild(tr);
  });
  target.replaceChildren(t);
}

async function refresh() {
  const status = document.getElementById("updated");
  try {
    const res = await fetch(location.pathname + "/data" + location.search);
    const body = await res.json();
    if (!res.ok) { document.getElementById("error").textContent = body.error || res.statusText; return; }
    document.getElementById("promoter").textContent = body.promoter;
    const amounts = {};
    body.balances.rows.forEach(([s, a]) => { amounts[s] = a; });
    document.getElementById("balances").replaceChildren(...STATUSES.map((s) => {
      const card = el("div", {class: "kpi"});
      card.appendChild(el("div", {class: "label"}, s));
      card.appendChild(el("div", {class: "value", id: "bal-" + s}, amounts[s] || "0.00"));
      return card;
    }));
    table(document.getElementById("lines"), body.lines);
    table(document.getElementById("settlements"), body.settlements);
    document.getElementById("links").replaceChildren(...body.links.map((l) => {
      const box = el("div", {class: "link"});
      box.appendChild(el("img", {src: l.qr, alt: "QR code of " + l.url}));
      box.appendChild(el("div", {}, (l.sku || "shop") + (l.campaign ? " · " + l.campaign : "") + " · " + l.clicks + " clicks"));
      const a = el("a", {href: l.url}, l.url);
      box.appendChild(a);
      return box;
    }));
    table(document.getElementById("recommended"),
          {columns: ["sku", "score"], rows: body.recommended.map((r) => [r.sku, r.score])});
    status.dataset.refreshes = String(Number(status.dataset.refreshes) + 1);
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach tuike: " + e;
  }
}
refresh();
setInterval(refresh, 5000);
