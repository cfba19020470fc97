// The dashboard: polls /dashboard/api/panels (every 2 s, see poll) with the filters of the header and draws
// every panel. Values arrive as exact strings (money as decimal strings); the KPI cards and the
// tables show them as sent, charts convert them to numbers only to draw.
"use strict";
const KPIS = [["orders", "attributed orders"], ["gmv", "attributed GMV"], ["accrued", "commission accrued"],
              ["clawed_back", "clawed back"], ["pending", "pending"], ["confirmed", "confirmed"],
              ["held", "held"], ["settled", "settled"]];
const STATUS_COLORS = {pending: "#94a3b8", confirmed: "#16a34a", held: "#dc2626", settled: "#2563eb"};
const FILTERS = ["period", "bucket", "campaign", "promoter"];
let inFlight = false;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function isNumeric(v) { return typeof v === "number" || (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v)); }

function table(target, panel) {
  if (panel.error) { target.replaceChildren(el("p", {class: "panel-error"}, panel.error)); return; }
  const t = el("table", {"data-rows": panel.rows.length});
  const head = el("tr");
  panel.columns.forEach((c) => head.appendChild(el("th", {}, c)));
  t.appendChild(head);
  for (const row of panel.rows) {
    const tr = el("tr");
    row.forEach((v, i) => tr.appendChild(el("td", {class: isNumeric(v) ? "num" : "", "data-col": panel.columns[i]}, v)));
    t.appendChild(tr);
  }
  target.replaceChildren(t);
}

function kpis(panel) {
  const box = document.getElementById("kpis");
  if (panel.error) { box.replaceChildren(el("p", {class: "panel-error"}, panel.error)); return; }
  const row = panel.rows[0] || panel.columns.map(() => "0");
  box.replaceChildren(...KPIS.map(([name, label]) => {
    const card = el("div", {class: "kpi"});
    card.appendChild(el("div", {class: "label"}, label));
    const value = row[panel.columns.indexOf(name)];
    card.appendChild(el("div", {class: "value", id: "kpi-" + name, "data-value": value ?? "0"}, value ?? "0"));
    return card;
  }));
}

function col(panel, name) { const i = panel.columns.indexOf(name); return panel.rows.map((r) => r[i]); }

const LAYOUT = {margin: {l: 50, r: 40, t: 10, b: 40}, barmode: "relative", showlegend: true,
                legend: {orientation: "h"}, font: {size: 11}};

function draw(id, traces, extra) {
  const div = document.getElementById(id);
  if (div && window.Plotly) Plotly.react(div, traces, {...LAYOUT, ...(extra || {})}, {displayModeBar: false, responsive: true});
}

function charts(p) {
  const g = p.gmv_over_time;
  draw("chart-gmv_over_time", [
    {x: col(g, "t"), y: col(g, "gmv").map(Number), type: "scatter", mode: "lines", name: "GMV"},
    {x: col(g, "t"), y: col(g, "orders").map(Number), type: "bar", name: "orders", yaxis: "y2", opacity: 0.4}],
    {yaxis2: {overlaying: "y", side: "right", showgrid: false}});
  const c = p.commission_over_time;
  const byStatus = {};
  c.rows.forEach((r) => {
    const s = r[c.columns.indexOf("status")];
    (byStatus[s] = byStatus[s] || {x: [], y: []});
    byStatus[s].x.push(r[c.columns.indexOf("t")]);
    byStatus[s].y.push(Number(r[c.columns.indexOf("amount")]));
  });
  draw("chart-commission_over_time", Object.entries(byStatus).map(([s, d]) =>
    ({x: d.x, y: d.y, type: "bar", name: s, marker: {color: STATUS_COLORS[s]}})));
  const r = p.refunds_over_time;
  draw("chart-refunds_over_time", [{x: col(r, "t"), y: col(r, "amount").map(Number), type: "bar", name: "reversed"}]);
  const h = p.holds_by_reason;
  draw("chart-holds_by_reason", [{x: col(h, "reason"), y: col(h, "orders").map(Number), type: "bar", name: "orders held"}]);
  const roi = p.roi_by_campaign;
  draw("chart-roi_by_campaign", [
    {x: col(roi, "campaign").map((x) => x || "(none)"), y: col(roi, "gmv").map(Number), type: "bar", name: "GMV"},
    {x: col(roi, "campaign").map((x) => x || "(none)"), y: col(roi, "commission").map(Number), type: "bar", name: "commission"}]);
}

function params() {
  const q = new URLSearchParams();
  FILTERS.forEach((f) => { const v = document.getElementById(f).value.trim(); if (v) q.set(f, v); });
  return q;
}

async function refresh() {
  if (inFlight) return;
  inFlight = true;
  const status = document.getElementById("updated");
  try {
    const res = await fetch("/dashboard/api/panels?" + params(), {credentials: "same-origin"});
    const body = await res.json();
    if (!res.ok) { document.getElementById("error").textContent = body.error || res.statusText; return; }
    document.getElementById("error").textContent = "";
    const p = body.panels;
    kpis(p.kpis);
    document.querySelectorAll("[data-panel]").forEach((d) => table(d, p[d.dataset.panel]));
    charts(p);
    status.dataset.refreshes = String(Number(status.dataset.refreshes) + 1);
    status.textContent = "updated " + new Date().toLocaleTimeString() + " (" + body.ms + " ms)";
    lastMs = body.ms;
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach tuike: " + e;
  } finally {
    inFlight = false;
  }
}

// Every 2 s, or, when the panels take long (a long period on a large ledger), twice as long as
// they took: the queries share the ledger's thread with the pipeline (embedded), which must keep
// most of it.
let lastMs = 0;
function poll() { refresh().finally(() => setTimeout(poll, Math.max(2000, 2 * lastMs))); }
FILTERS.forEach((f) => document.getElementById(f).addEventListener("change", refresh));
poll();
