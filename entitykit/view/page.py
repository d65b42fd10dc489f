"""The viewer page: one HTML file with its CSS and JavaScript inline (no CDN, no network, vanilla JS).

The edits in the page re-implement ``entitykit.edit`` on a canvas with the same meaning:

- cutout: the photo's colours, alpha 255 on the entity and 0 elsewhere (optionally cropped to its box);
- bokeh: the entity unchanged, the rest blurred by an anti-aliased disk of radius ``blur``, normalised
  over background pixels only (no halo of the entity), edge feathered outward by ``max(1, blur/4)``,
  mirrored image edges;
- recolor: the entity's hue rotated by ``hue`` turns, saturation and value kept.

``tests/test_view.py`` compares the browser's results with ``entitykit.edit`` pixel by pixel.
"""

from __future__ import annotations

import html

CSS = r"""
:root { --bg:#f4f5f7; --card:#fff; --ink:#1f2328; --muted:#667085; --line:#d9dce1; --accent:#2563eb;
        --head:#111827; --sel:#ffd60a; }
* { box-sizing: border-box; }
html, body { margin:0; background:var(--bg); color:var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background:var(--head); color:#e5e7eb; padding:10px 20px; display:flex; gap:18px; align-items:baseline;
  flex-wrap:wrap; position:sticky; top:0; z-index:5; }
header .brand { font-size:16px; letter-spacing:.02em; color:#fff; }
header .brand b { color:#93c5fd; }
#summary { display:flex; gap:14px; flex-wrap:wrap; align-items:baseline; color:#cbd5e1; }
#summary .kv b { color:#fff; font-weight:600; }
main { padding:14px 20px 40px; }
.toolbar { display:flex; gap:12px; align-items:center; flex-wrap:wrap; margin:4px 0 12px; }
.toolbar input[type=search] { padding:6px 10px; border:1px solid var(--line); border-radius:6px; min-width:240px; }
select, button { font:inherit; padding:5px 10px; border:1px solid var(--line); border-radius:6px; background:#fff;
  color:var(--ink); cursor:pointer; }
button:hover { border-color:#9aa4b2; }
button:disabled { opacity:.45; cursor:default; }
.muted { color:var(--muted); }
.legend { color:var(--muted); font-size:12.5px; margin:-4px 0 12px; }
#gallery { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:14px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; overflow:hidden; cursor:pointer;
  transition: box-shadow .12s, transform .12s; }
.card:hover { box-shadow:0 6px 18px rgba(15,23,42,.12); transform:translateY(-1px); }
.card .thumbs { display:flex; gap:2px; background:#0f172a; }
.card figure { margin:0; flex:1 1 0; position:relative; aspect-ratio: var(--ar, 4/3); }
.card figure img { width:100%; height:100%; object-fit:contain; display:block; }
.card figcaption { position:absolute; left:6px; top:5px; font-size:11px; color:#fff; background:rgba(15,23,42,.7);
  padding:1px 6px; border-radius:4px; letter-spacing:.03em; }
.card .meta { padding:8px 10px 9px; display:flex; justify-content:space-between; gap:8px; align-items:center; }
.card .name { font-weight:600; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.card .sub { padding:0 10px 9px; color:var(--muted); font-size:12.5px; }
.badge { color:#fff; border-radius:999px; padding:1px 9px; font-size:12.5px; font-weight:600; white-space:nowrap;
  font-variant-numeric: tabular-nums; }
#detail-title { font-weight:600; font-size:15px; }
#stats { display:flex; gap:8px; flex-wrap:wrap; margin-bottom:12px; }
.chip { background:#fff; border:1px solid var(--line); border-radius:999px; padding:2px 10px; font-size:12.5px;
  font-variant-numeric: tabular-nums; }
.chip b { font-weight:600; }
#panels { display:flex; gap:16px; align-items:flex-start; flex-wrap:wrap; }
.panel { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:10px; flex:1 1 420px;
  min-width:0; }
.panel h3 { margin:0 0 8px; font-size:13.5px; display:flex; justify-content:space-between; gap:8px; }
.panel h3 .muted { font-weight:400; }
.panel canvas { display:block; margin:0 auto; cursor:crosshair; border-radius:4px; }
.panel .note { color:#b45309; font-size:12.5px; margin-top:6px; }
#editor { margin-top:16px; background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px;
  display:grid; grid-template-columns: 290px 1fr; gap:18px; }
#editor[hidden] { display:none; }
#editor h3 { margin:0 0 6px; font-size:14px; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:3px; vertical-align:-1px; margin-right:5px;
  border:1px solid rgba(0,0,0,.25); }
.ops { display:flex; gap:0; margin:10px 0; }
.ops button { border-radius:0; flex:1; }
.ops button:first-child { border-radius:6px 0 0 6px; }
.ops button:last-child { border-radius:0 6px 6px 0; }
.ops button[aria-pressed=true] { background:var(--accent); color:#fff; border-color:var(--accent); }
.param { display:block; margin:8px 0; font-size:13px; }
.param input[type=range] { width:100%; }
.param[hidden] { display:none; }
#download { display:inline-block; margin-top:10px; background:var(--accent); color:#fff; text-decoration:none;
  padding:7px 14px; border-radius:6px; font-weight:600; }
#download[aria-disabled=true] { opacity:.45; pointer-events:none; }
#edit-status { display:block; margin-top:8px; color:var(--muted); font-size:12.5px; }
.preview-wrap { min-height:120px; display:flex; align-items:flex-start; justify-content:center; border-radius:8px;
  background: repeating-conic-gradient(#e5e7eb 0% 25%, #fff 0% 50%) 0 0 / 16px 16px; padding:8px; }
#preview { max-width:100%; height:auto; display:block; }
#tooltip { position:fixed; z-index:20; pointer-events:none; background:rgba(17,24,39,.94); color:#f9fafb;
  border-radius:8px; padding:8px 10px; font-size:12.5px; max-width:320px; box-shadow:0 8px 22px rgba(0,0,0,.25); }
#tooltip[hidden] { display:none; }
#tooltip .tt-h { font-weight:600; font-size:13px; margin-bottom:2px; }
#tooltip .tt-sec { margin-top:6px; padding-top:6px; border-top:1px solid rgba(255,255,255,.18); color:#cbd5e1; }
#tooltip .tt-row { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
#message { color:#b91c1c; margin:8px 0; }
#message:empty { display:none; }
.help { color:var(--muted); font-size:12.5px; margin-top:10px; }
kbd { border:1px solid var(--line); border-bottom-width:2px; border-radius:4px; padding:0 4px; font-size:11.5px;
  background:#fff; }
"""

BODY = r"""
<header>
  <div class="brand">entitykit <b>view</b></div>
  <div id="summary"></div>
</header>
<main>
  <div id="message" role="alert"></div>
  <section id="gallery-view">
    <div class="toolbar">
      <input id="filter" type="search" placeholder="filter by file name" aria-label="filter by file name">
      <label>sort <select id="sort" aria-label="sort"></select></label>
      <span id="count" class="muted"></span>
    </div>
    <div id="legend" class="legend"></div>
    <div id="gallery"></div>
  </section>
  <section id="detail-view" hidden>
    <div class="toolbar">
      <button id="back" title="back to the gallery (Esc)">&larr; gallery</button>
      <button id="prev" title="previous image (&larr;)">&lsaquo; prev</button>
      <button id="next" title="next image (&rarr;)">next &rsaquo;</button>
      <span id="detail-title"></span>
      <label class="muted">overlay <input id="opacity" type="range" min="0" max="1" step="0.05" value="1"></label>
    </div>
    <div id="stats"></div>
    <div id="panels"></div>
    <div class="help">Hover: entity id, score, area, source (and what lies under the same pixel on the other side).
      Click: select an entity and preview an edit. <kbd>&larr;</kbd> <kbd>&rarr;</kbd> previous / next image,
      <kbd>Esc</kbd> clear the selection, then back to the gallery.</div>
    <div id="editor" hidden>
      <div>
        <h3 id="sel-info"></h3>
        <div class="muted" id="sel-detail"></div>
        <div class="ops" role="group" aria-label="edit">
          <button data-op="cutout" aria-pressed="true">cutout</button>
          <button data-op="bokeh" aria-pressed="false">bokeh</button>
          <button data-op="recolor" aria-pressed="false">recolor</button>
        </div>
        <label class="param" id="p-crop"><input type="checkbox" id="crop"> crop to the entity's box</label>
        <label class="param" id="p-blur" hidden>background blur radius <b id="blur-v">12</b> px
          <input id="blur" type="range" min="0" max="48" step="1" value="12"></label>
        <label class="param" id="p-hue" hidden>hue rotation <b id="hue-v">0.30</b> turn
          <input id="hue" type="range" min="0" max="1" step="0.01" value="0.3"></label>
        <a id="download" href="#" download="edit.png" aria-disabled="true">Download PNG</a>
        <button id="deselect" style="margin-left:6px">clear selection</button>
        <span id="edit-status"></span>
      </div>
      <div class="preview-wrap"><canvas id="preview" width="1" height="1"></canvas></div>
    </div>
  </section>
</main>
<div id="tooltip" hidden></div>
"""

JS = r"""
(() => {
'use strict';
const IDX = window.EK_INDEX;
const ITEMS = IDX.items;
const MODE = IDX.mode;
const SIDES = MODE === 'both' ? ['gt', 'pred'] : [MODE];
const SIDE_NAME = { gt: 'Ground truth', pred: 'Prediction' };
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const fmt = (v, d = 3) => (v === null || v === undefined ? '—' : Number(v).toFixed(d));
const num = (v) => (v === null || v === undefined ? '—' : Number(v).toLocaleString('en-US'));
const baseName = (p) => (p ? String(p).replace(/\/+$/, '').split('/').pop() : '');
const url = (rel) => rel.split('/').map(encodeURIComponent).join('/');
function apeColor(v) { return v === null || v === undefined ? '#6b7280' : `hsl(${Math.round(120 * v)} 68% 36%)`; }
function message(text) { $('message').textContent = text || ''; }

// ------------------------------------------------------------------------------------------- header
function renderSummary() {
  const parts = [];
  if (IDX.dataset) parts.push(['dataset', baseName(IDX.dataset)]);
  if (IDX.predictions) parts.push(['predictions', baseName(IDX.predictions)]);
  if (IDX.model && IDX.model.checkpoint) parts.push(['model', IDX.model.checkpoint]);
  parts.push(['images', ITEMS.length === IDX.total ? num(IDX.total) : `${num(ITEMS.length)} of ${num(IDX.total)}`]);
  const o = IDX.overall;
  if (o) for (const k of ['APe', 'APe50', 'APe75', 'PQ']) if (k in o) parts.push([k, fmt(o[k])]);
  $('summary').innerHTML = parts.map(([k, v]) => `<span class="kv">${esc(k)} <b>${esc(v)}</b></span>`).join('');
  document.title = `entitykit view · ${[IDX.dataset, IDX.predictions].filter(Boolean).map(baseName).join(' · ')}`;
  $('legend').textContent = MODE === 'both'
    ? 'APe per image: the scorer\'s APe (mask AP averaged over IoU 0.50:0.95) on that image alone; "—" where the image has no ground-truth entity. Worst first.'
    : (MODE === 'gt' ? 'Ground truth only: give predictions too for per-image APe.' : 'Predictions only: give the dataset too for per-image APe.');
}

// ------------------------------------------------------------------------------------------ gallery
const SORTS = [];
if (MODE === 'both') {
  SORTS.push(['worst', 'worst APe first', (a, b) => a.i - b.i]);
  SORTS.push(['best', 'best APe first', (a, b) => (b.APe ?? -1) - (a.APe ?? -1) || a.pos - b.pos]);
}
SORTS.push(['file', 'file order', (a, b) => a.pos - b.pos]);
if (MODE !== 'pred') SORTS.push(['gt', 'most ground-truth entities', (a, b) => b.n_gt - a.n_gt || a.pos - b.pos]);
if (MODE !== 'gt') SORTS.push(['pred', 'most predicted entities', (a, b) => b.n_pred - a.n_pred || a.pos - b.pos]);
SORTS.push(['name', 'file name', (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)]);
let view = ITEMS.map((it) => it.i);

function card(it) {
  const c = document.createElement('div');
  c.className = 'card';
  c.dataset.index = it.i;
  c.title = it.name;
  const ar = it.w && it.h ? `${it.w}/${it.h}` : '4/3';
  const figs = SIDES.map((s) => it.thumbs[s]
    ? `<figure style="--ar:${ar}"><img loading="lazy" alt="${esc(SIDE_NAME[s])} overlay of ${esc(it.name)}" src="${esc(url(it.thumbs[s]))}"><figcaption>${s === 'gt' ? 'GT' : 'pred'}</figcaption></figure>`
    : '').join('');
  const badge = MODE === 'both' ? `<span class="badge" style="background:${apeColor(it.APe)}" title="APe of this image">APe ${fmt(it.APe)}</span>` : '';
  const sub = [];
  if (it.n_gt !== null && it.n_gt !== undefined) sub.push(`GT ${num(it.n_gt)}`);
  if (it.n_pred !== null && it.n_pred !== undefined) sub.push(`pred ${num(it.n_pred)}`);
  if (MODE === 'both') sub.push(`APe50 ${fmt(it.APe50)}`, `F1@0.5 ${fmt(it.f1_50, 2)}`);
  if (it.source) sub.push(esc(it.source));
  c.innerHTML = `<div class="thumbs">${figs}</div><div class="meta"><span class="name">${esc(baseName(it.name))}</span>${badge}</div><div class="sub">${sub.join(' · ')}</div>`;
  c.addEventListener('click', () => { location.hash = `#image=${it.i}`; });
  return c;
}

function renderGallery() {
  const q = $('filter').value.trim().toLowerCase();
  const sort = SORTS.find((s) => s[0] === $('sort').value) || SORTS[0];
  const rows = ITEMS.filter((it) => !q || it.name.toLowerCase().includes(q)).slice().sort(sort[2]);
  view = rows.map((it) => it.i);
  const g = $('gallery');
  g.textContent = '';
  const frag = document.createDocumentFragment();
  for (const it of rows) frag.appendChild(card(it));
  g.appendChild(frag);
  $('count').textContent = `${num(rows.length)} image${rows.length === 1 ? '' : 's'}`;
}

// ------------------------------------------------------------------------------------ loading data
const cache = new Map();
const waiting = new Map();
window.ekData = (d) => { const w = waiting.get(d.index); if (w) { waiting.delete(d.index); w(d); } };
function loadRaw(i) {
  return new Promise((resolve, reject) => {
    waiting.set(i, resolve);
    const s = document.createElement('script');
    s.src = url(ITEMS[i].data);
    s.onerror = () => { waiting.delete(i); reject(new Error(`cannot load ${ITEMS[i].data} (is the viewer folder complete?)`)); };
    s.onload = () => s.remove();
    document.head.appendChild(s);
  });
}
function decodeImage(src) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error('cannot decode an embedded image'));
    im.src = src;
  });
}
function decodeRuns(r, n) {
  const m = new Int32Array(n);
  let p = 0;
  for (let k = 0; k < r.v.length; k++) { const v = r.v[k], len = r.n[k]; if (v) m.fill(v, p, p + len); p += len; }
  if (p !== n) throw new Error('id map runs do not cover the image');
  return m;
}
async function prepare(raw) {
  const W = raw.width, H = raw.height;
  const photo = await decodeImage(raw.photo);
  const c = document.createElement('canvas');
  c.width = W; c.height = H;
  const x = c.getContext('2d', { willReadFrequently: true });
  x.drawImage(photo, 0, 0);
  const pixels = x.getImageData(0, 0, W, H);  // data: URIs keep the canvas readable, also from file://
  const sides = {};
  for (const s of SIDES) {
    const d = raw[s];
    if (!d) continue;
    sides[s] = { overlay: await decodeImage(d.overlay), map: decodeRuns(d.runs, W * H),
                 ents: new Map(d.entities.map((e) => [e.v, e])), list: d.entities, note: d.note };
  }
  return { raw, W, H, photo, pixels, sides };
}
async function getImage(i) {
  if (cache.has(i)) return cache.get(i);
  const img = await prepare(await loadRaw(i));
  cache.set(i, img);
  if (cache.size > 6) cache.delete(cache.keys().next().value);
  return img;
}

// ------------------------------------------------------------------------------------------ detail
let cur = null;        // { i, img }
let hover = null;      // { side, x, y }
let sel = null;        // { side, v }
let op = 'cutout';
const panels = {};
let layers = new Map();

function fitCanvases() {
  if (!cur) return;
  for (const s of Object.keys(panels)) {
    const p = panels[s];
    const avail = p.box.clientWidth - 20;
    const scale = Math.min(avail / cur.img.W, (window.innerHeight * 0.58) / cur.img.H);
    cur.scale = scale;
    p.canvas.style.width = `${Math.max(1, Math.floor(cur.img.W * scale))}px`;
    p.canvas.style.height = `${Math.max(1, Math.floor(cur.img.H * scale))}px`;
    p.canvas.style.imageRendering = scale >= 2 ? 'pixelated' : 'auto';
  }
}

let detailToken = 0;
async function showDetail(i) {
  const token = ++detailToken;
  $('gallery-view').hidden = true;
  $('detail-view').hidden = false;
  const it = ITEMS[i];
  $('detail-title').textContent = it.name;
  message('');
  let img;
  try { img = await getImage(i); } catch (e) { message(e.message); return; }
  if (token !== detailToken) return;  // another image was asked for meanwhile
  cur = { i, img };
  sel = null; hover = null; layers = new Map();
  $('editor').hidden = true;
  const pos = view.indexOf(i);
  $('prev').disabled = pos <= 0;
  $('next').disabled = pos < 0 || pos >= view.length - 1;
  const chips = [];
  if (MODE === 'both') {
    chips.push(['APe', fmt(it.APe)], ['APe50', fmt(it.APe50)], ['APe75', fmt(it.APe75)], ['F1@0.5', fmt(it.f1_50, 2)],
               ['TP / FP / FN @0.5', `${num(it.tp_50)} / ${num(it.fp_50)} / ${num(it.fn_50)}`]);
    if (it.pq !== undefined && it.pq !== null) chips.push(['PQ', fmt(it.pq)]);
  }
  if (it.n_gt !== null && it.n_gt !== undefined) chips.push(['GT entities', num(it.n_gt)]);
  if (it.n_pred !== null && it.n_pred !== undefined) chips.push(['predicted', num(it.n_pred)]);
  chips.push(['image id', String(it.image_id)], ['size', `${img.W}×${img.H}`]);
  if (it.source) chips.push(['source', it.source]);
  $('stats').innerHTML = chips.map(([k, v]) => `<span class="chip">${esc(k)} <b>${esc(v)}</b></span>`).join('');
  const box = $('panels');
  box.textContent = '';
  for (const s of SIDES) {
    const d = img.sides[s];
    const panel = document.createElement('div');
    panel.className = 'panel';
    panel.dataset.side = s;
    const n = d.list.filter((e) => !e.crowd).length;
    panel.innerHTML = `<h3><span>${SIDE_NAME[s]}</span><span class="muted">${num(n)} entit${n === 1 ? 'y' : 'ies'}</span></h3>`;
    const canvas = document.createElement('canvas');
    canvas.width = img.W; canvas.height = img.H;
    canvas.id = `canvas-${s}`;
    panel.appendChild(canvas);
    if (d.note) { const note = document.createElement('div'); note.className = 'note'; note.textContent = d.note; panel.appendChild(note); }
    box.appendChild(panel);
    panels[s] = { box: panel, canvas, ctx: canvas.getContext('2d') };
    canvas.addEventListener('mousemove', (e) => onMove(s, e));
    canvas.addEventListener('mouseleave', () => { hover = null; $('tooltip').hidden = true; drawAll(); });
    canvas.addEventListener('click', (e) => onClick(s, e));
  }
  for (const s of Object.keys(panels)) if (!SIDES.includes(s)) delete panels[s];
  fitCanvases();
  drawAll();
  box.dataset.ready = String(i);
}

function showGallery() {
  detailToken++;
  cur = null; sel = null; hover = null;
  $('tooltip').hidden = true;
  $('detail-view').hidden = true;
  $('gallery-view').hidden = false;
  $('panels').dataset.ready = '';
}

function layer(side, v, style) {
  const key = `${side}:${v}:${style}`;
  if (layers.has(key)) return layers.get(key);
  const { W, H } = cur.img;
  const m = cur.img.sides[side].map;
  const c = document.createElement('canvas');
  c.width = W; c.height = H;
  const x = c.getContext('2d');
  const im = x.createImageData(W, H);
  const d = im.data;
  const t = Math.max(1, Math.round(Math.min(W, H) / 250)) + (style === 'selected' ? 1 : 0);
  const fill = style === 'hover' ? [255, 255, 255, 95] : style === 'echo' ? [255, 255, 255, 55] : null;
  const line = style === 'selected' ? [255, 214, 10, 255] : style === 'hover' ? [255, 255, 255, 255] : [255, 255, 255, 190];
  for (let y = 0; y < H; y++) {
    for (let xx = 0; xx < W; xx++) {
      const i = y * W + xx, o = 4 * i;
      if (m[i] !== v) {
        if (style === 'selected') { d[o + 3] = 120; }
        continue;
      }
      let edge = false;
      for (let k = 1; k <= t && !edge; k++) {
        edge = xx < k || xx + k >= W || y < k || y + k >= H || m[i - k] !== v || m[i + k] !== v || m[i - k * W] !== v || m[i + k * W] !== v;
      }
      const col = edge ? line : fill;
      if (col) { d[o] = col[0]; d[o + 1] = col[1]; d[o + 2] = col[2]; d[o + 3] = col[3]; }
    }
  }
  x.putImageData(im, 0, 0);
  if (layers.size > 24) layers.delete(layers.keys().next().value);
  layers.set(key, c);
  return c;
}

function draw(side) {
  const p = panels[side], img = cur.img, s = img.sides[side];
  const ctx = p.ctx;
  ctx.globalAlpha = 1;
  ctx.drawImage(img.photo, 0, 0);
  ctx.globalAlpha = Number($('opacity').value);
  ctx.drawImage(s.overlay, 0, 0);
  ctx.globalAlpha = 1;
  if (sel && sel.side === side) ctx.drawImage(layer(side, sel.v, 'selected'), 0, 0);
  if (hover) {
    const v = s.map[hover.y * img.W + hover.x];
    if (v && !(sel && sel.side === side && sel.v === v)) ctx.drawImage(layer(side, v, hover.side === side ? 'hover' : 'echo'), 0, 0);
  }
}
function drawAll() { if (cur) for (const s of SIDES) draw(s); }

function pixelAt(side, e) {
  const r = panels[side].canvas.getBoundingClientRect();
  const x = Math.floor(((e.clientX - r.left) * cur.img.W) / r.width);
  const y = Math.floor(((e.clientY - r.top) * cur.img.H) / r.height);
  return x >= 0 && y >= 0 && x < cur.img.W && y < cur.img.H ? { x, y } : null;
}

function describe(side, v, secondary) {
  const e = cur.img.sides[side].ents.get(v);
  const cls = secondary ? 'tt-sec' : '';
  if (!e) return `<div class="${cls}"><div class="tt-h">${SIDE_NAME[side]}: no entity</div><div class="tt-row">void (id 0)</div></div>`;
  const rows = [];
  let head;
  if (side === 'gt') {
    head = `GT entity #${esc(e.id)}${e.crowd ? ' (crowd)' : ''}`;
    const kind = e.thing === 1 ? 'thing' : e.thing === 0 ? 'stuff' : null;
    rows.push(`area ${num(e.area)} px`);
    rows.push(`source ${esc(e.source ?? '—')}${e.category ? ` · ${esc(e.category)}` : ''}${kind ? ` · ${kind}` : ''}`);
    if (MODE === 'both') rows.push(e.best ? `best prediction #${e.best[0]} · IoU ${fmt(e.best[1], 2)}` : 'no overlapping prediction');
  } else {
    head = `prediction #${esc(e.id)}`;
    rows.push(`score ${fmt(e.score)}`);
    rows.push(`area ${num(e.area)} px`);
    rows.push(`source ${esc(baseName(IDX.predictions) || 'predictions')}${IDX.model && IDX.model.checkpoint ? ` · ${esc(IDX.model.checkpoint)}` : ''}`);
    if (MODE === 'both') rows.push(e.best ? `best GT #${esc(e.best[0])} · IoU ${fmt(e.best[1], 2)}` : 'no overlapping ground truth');
  }
  return `<div class="${cls}"><div class="tt-h"><span class="swatch" style="background:${e.color}"></span>${head}</div>${rows.map((r) => `<div class="tt-row">${r}</div>`).join('')}</div>`;
}

function onMove(side, e) {
  if (!cur) return;
  const p = pixelAt(side, e);
  if (!p) return;
  hover = { side, x: p.x, y: p.y };
  const k = p.y * cur.img.W + p.x;
  let html = describe(side, cur.img.sides[side].map[k], false);
  for (const o of SIDES) if (o !== side) html += describe(o, cur.img.sides[o].map[k], true);
  html += `<div class="tt-sec">pixel (${p.x}, ${p.y})${cur.img.sides[side].map[k] ? ' · click to edit' : ''}</div>`;
  const tt = $('tooltip');
  tt.innerHTML = html;
  tt.hidden = false;
  const pad = 16;
  let left = e.clientX + pad, top = e.clientY + pad;
  const r = tt.getBoundingClientRect();
  if (left + r.width > window.innerWidth - 4) left = e.clientX - r.width - pad;
  if (top + r.height > window.innerHeight - 4) top = e.clientY - r.height - pad;
  tt.style.left = `${Math.max(4, left)}px`;
  tt.style.top = `${Math.max(4, top)}px`;
  drawAll();
}

function onClick(side, e) {
  if (!cur) return;
  const p = pixelAt(side, e);
  if (!p) return;
  const v = cur.img.sides[side].map[p.y * cur.img.W + p.x];
  if (!v) { message(''); $('edit-status').textContent = `no entity at (${p.x}, ${p.y}): pick a coloured region`; return; }
  sel = { side, v };
  const ent = cur.img.sides[side].ents.get(v);
  $('editor').hidden = false;
  $('sel-info').innerHTML = `<span class="swatch" style="background:${ent.color}"></span>${side === 'gt' ? 'GT entity' : 'prediction'} #${esc(ent.id)}`;
  $('sel-detail').textContent = side === 'gt'
    ? `area ${num(ent.area)} px${ent.source ? ' · ' + ent.source : ''}${ent.category ? ' · ' + ent.category : ''} · picked at (${p.x}, ${p.y})`
    : `score ${fmt(ent.score)} · area ${num(ent.area)} px · picked at (${p.x}, ${p.y})`;
  const blur = $('blur');
  blur.max = String(Math.min(96, Math.max(cur.img.W, cur.img.H)));
  drawAll();
  runEdit();
}

// ------------------------------------------------------------------------------ edits (entitykit.edit)
function entityMask() {
  const m = cur.img.sides[sel.side].map, v = sel.v;
  const out = new Uint8Array(m.length);
  for (let i = 0; i < m.length; i++) out[i] = m[i] === v ? 1 : 0;
  return out;
}
function maskBox(mask, W, H) {
  let x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (mask[y * W + x]) {
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  return [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}
const rint = (x) => { const r = Math.round(x); return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r; };  // numpy's rint / round
const mod = (a, b) => a - b * Math.floor(a / b);  // Python's %
const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);

function cutoutOp(px, mask, W, H, crop) {
  const [bx, by, bw, bh] = crop ? maskBox(mask, W, H) : [0, 0, W, H];
  const out = new ImageData(bw, bh);
  const s = px.data, d = out.data;
  for (let y = 0; y < bh; y++) for (let x = 0; x < bw; x++) {
    const i = (y + by) * W + (x + bx), o = 4 * (y * bw + x);
    d[o] = s[4 * i]; d[o + 1] = s[4 * i + 1]; d[o + 2] = s[4 * i + 2]; d[o + 3] = mask[i] ? 255 : 0;
  }
  return out;
}

function recolorOp(px, mask, W, H, hue) {
  const out = new ImageData(new Uint8ClampedArray(px.data), W, H);
  const d = out.data;
  for (let i = 0; i < W * H; i++) {
    if (!mask[i]) continue;
    const r = d[4 * i] / 255, g = d[4 * i + 1] / 255, b = d[4 * i + 2] / 255;
    const v = Math.max(r, g, b), c = v - Math.min(r, g, b);
    const safe = c > 0 ? c : 1;
    let h = v === r ? mod((g - b) / safe, 6) : v === g ? (b - r) / safe + 2 : (r - g) / safe + 4;
    h = c > 0 ? h / 6 : 0;
    const s = v > 0 ? c / v : 0;
    h = mod(mod(h + hue, 1), 1);
    const ch = [5, 3, 1].map((n) => { const k = mod(n + h * 6, 6); return v - v * s * clamp(Math.min(k, 4 - k), 0, 1); });
    for (let j = 0; j < 3; j++) d[4 * i + j] = clamp(rint(ch[j] * 255), 0, 255);
  }
  return out;
}

function diskSpec(radius) {  // entitykit.edit.disk_kernel, folded by its symmetry: rows dy >= 0, taps dx >= 0
  const r = Math.max(radius, 0.5), n = Math.ceil(r);
  let total = 0;
  const rows = [];
  for (let dy = 0; dy <= n; dy++) {
    let a = -1;  // taps |dx| <= a weigh 1 (a run: one prefix-sum difference); the rim's fractional taps follow
    const dxs = [], ws = [];
    for (let dx = 0; dx <= n; dx++) {
      const w = clamp(r + 0.5 - Math.hypot(dx, dy), 0, 1);
      total += w * (dx ? 2 : 1) * (dy ? 2 : 1);
      if (w >= 1) a = dx; else if (w > 0) { dxs.push(dx); ws.push(w); }
    }
    rows.push({ dy, a, dxs, ws });
  }
  return { n, rows, total };
}
function reflect(i, n) { const p = 2 * n, m = ((i % p) + p) % p; return m < n ? m : p - 1 - m; }  // numpy 'symmetric'
function convolve(src, W, H, k) {  // 'same' size, edges mirrored; row prefix sums: the cost grows with the radius, not the area
  const n = k.n, PW = W + 2 * n, S = PW + 1;
  const cols = new Int32Array(PW);
  for (let j = 0; j < PW; j++) cols[j] = reflect(j - n, W);
  const P = new Float64Array(H * S), Q = new Float64Array(H * PW);
  for (let y = 0; y < H; y++) {
    let acc = 0;
    const b = y * S, q = y * PW, row = y * W;
    for (let j = 0; j < PW; j++) { const v = src[row + cols[j]]; Q[q + j] = v; acc += v; P[b + j + 1] = acc; }
  }
  const out = new Float64Array(W * H);
  for (let y = 0; y < H; y++) {
    const o = y * W;
    for (const { dy, a, dxs, ws } of k.rows) {
      const ya = reflect(y + dy, H), yb = reflect(y - dy, H), two = dy > 0;
      if (a >= 0) {
        const pa = ya * S + n, pb = yb * S + n;
        if (two) for (let x = 0; x < W; x++) out[o + x] += P[pa + x + a + 1] - P[pa + x - a] + P[pb + x + a + 1] - P[pb + x - a];
        else for (let x = 0; x < W; x++) out[o + x] += P[pa + x + a + 1] - P[pa + x - a];
      }
      const qa = ya * PW + n, qb = yb * PW + n;
      for (let t = 0; t < dxs.length; t++) {
        const dx = dxs[t], w = ws[t];
        if (dx === 0) {
          if (two) for (let x = 0; x < W; x++) out[o + x] += w * (Q[qa + x] + Q[qb + x]);
          else for (let x = 0; x < W; x++) out[o + x] += w * Q[qa + x];
        } else if (two) {
          for (let x = 0; x < W; x++) out[o + x] += w * (Q[qa + x + dx] + Q[qa + x - dx] + Q[qb + x + dx] + Q[qb + x - dx]);
        } else {
          for (let x = 0; x < W; x++) out[o + x] += w * (Q[qa + x + dx] + Q[qa + x - dx]);
        }
      }
    }
    for (let x = 0; x < W; x++) out[o + x] /= k.total;
  }
  return out;
}

function bokehOp(px, mask, W, H, blur) {
  const out = new ImageData(new Uint8ClampedArray(px.data), W, H);
  const N = W * H;
  let all = true;
  for (let i = 0; i < N && all; i++) all = mask[i] === 1;
  if (blur === 0 || all) return out;
  const feather = Math.max(1, blur / 4);
  const K = diskSpec(blur);
  const bg = new Float64Array(N), mk = new Float64Array(N);
  for (let i = 0; i < N; i++) { bg[i] = mask[i] ? 0 : 1; mk[i] = mask[i]; }
  const den = convolve(bg, W, H, K);
  for (let i = 0; i < N; i++) den[i] = Math.max(den[i], 1e-6);
  const alpha = convolve(mk, W, H, diskSpec(feather));
  for (let i = 0; i < N; i++) alpha[i] = mask[i] ? 1 : clamp(2 * alpha[i], 0, 1);
  const s = px.data, d = out.data, plane = new Float64Array(N);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < N; i++) plane[i] = s[4 * i + c] * bg[i];
    const blurred = convolve(plane, W, H, K);
    for (let i = 0; i < N; i++) {
      if (mask[i]) continue;  // the entity's own pixels are returned unchanged
      const p = s[4 * i + c], q = blurred[i] / den[i];
      d[4 * i + c] = clamp(rint(alpha[i] * p + (1 - alpha[i]) * q), 0, 255);
    }
  }
  return out;
}

let editToken = 0;
function runEdit() {
  if (!cur || !sel) return;
  const token = ++editToken;
  const dl = $('download');
  dl.setAttribute('aria-disabled', 'true');
  dl.dataset.ready = '0';
  $('edit-status').textContent = 'computing…';
  for (const b of document.querySelectorAll('.ops button')) b.setAttribute('aria-pressed', String(b.dataset.op === op));
  $('p-crop').hidden = op !== 'cutout';
  $('p-blur').hidden = op !== 'bokeh';
  $('p-hue').hidden = op !== 'recolor';
  setTimeout(() => {
    if (token !== editToken || !cur || !sel) return;
    const t0 = performance.now();
    const { W, H, pixels } = cur.img;
    const mask = entityMask();
    const blur = Number($('blur').value), hue = Number($('hue').value);
    const res = op === 'cutout' ? cutoutOp(pixels, mask, W, H, $('crop').checked)
      : op === 'bokeh' ? bokehOp(pixels, mask, W, H, blur) : recolorOp(pixels, mask, W, H, hue);
    const pv = $('preview');
    pv.width = res.width; pv.height = res.height;
    pv.getContext('2d').putImageData(res, 0, 0);
    const zoom = Math.min(Math.max(1, cur.scale || 1), 4, (window.innerHeight * 0.64) / res.height);  // as large as in the panels
    pv.style.width = `${Math.round(res.width * zoom)}px`;
    pv.style.imageRendering = zoom >= 2 ? 'pixelated' : 'auto';
    const ent = cur.img.sides[sel.side].ents.get(sel.v);
    const stem = baseName(ITEMS[cur.i].name).replace(/\.[^.]+$/, '') || 'image';
    const what = op === 'bokeh' ? `bokeh-r${blur}` : op === 'recolor' ? `recolor-h${hue.toFixed(2)}` : (($('crop').checked) ? 'cutout-crop' : 'cutout');
    dl.download = `${stem}_${sel.side}${ent.id}_${what}.png`;
    dl.href = pv.toDataURL('image/png');
    dl.setAttribute('aria-disabled', 'false');
    dl.dataset.ready = '1';
    $('edit-status').textContent = `${op} of ${sel.side === 'gt' ? 'GT entity' : 'prediction'} #${ent.id}: ${res.width}×${res.height} PNG (${Math.round(performance.now() - t0)} ms)`;
  }, 20);
}

// --------------------------------------------------------------------------------------- wiring
function route() {
  const m = /^#image=(\d+)$/.exec(location.hash);
  if (m && ITEMS[Number(m[1])]) showDetail(Number(m[1])); else showGallery();
}
function step(d) {
  if (!cur) return;
  const pos = view.indexOf(cur.i);
  const next = view[pos + d];
  if (next !== undefined) location.hash = `#image=${next}`;
}
function init() {
  renderSummary();
  for (const [key, label] of SORTS) { const o = document.createElement('option'); o.value = key; o.textContent = label; $('sort').appendChild(o); }
  $('filter').addEventListener('input', renderGallery);
  $('sort').addEventListener('change', renderGallery);
  $('back').addEventListener('click', () => { location.hash = ''; });
  $('prev').addEventListener('click', () => step(-1));
  $('next').addEventListener('click', () => step(1));
  $('opacity').addEventListener('input', drawAll);
  $('deselect').addEventListener('click', () => { sel = null; $('editor').hidden = true; drawAll(); });
  for (const b of document.querySelectorAll('.ops button')) b.addEventListener('click', () => { op = b.dataset.op; runEdit(); });
  $('crop').addEventListener('change', runEdit);
  let timer = 0;
  $('blur').addEventListener('input', () => { $('blur-v').textContent = $('blur').value; clearTimeout(timer); timer = setTimeout(runEdit, 150); });
  $('hue').addEventListener('input', () => { $('hue-v').textContent = Number($('hue').value).toFixed(2); clearTimeout(timer); timer = setTimeout(runEdit, 60); });
  window.addEventListener('resize', fitCanvases);
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT')) return;
    if ($('detail-view').hidden) return;
    if (e.key === 'ArrowLeft') step(-1);
    else if (e.key === 'ArrowRight') step(1);
    else if (e.key === 'Escape') {
      if (sel) { sel = null; $('editor').hidden = true; drawAll(); } else location.hash = '';
    }
  });
  renderGallery();
  route();
  document.body.dataset.ready = '1';
}
init();
})();
"""


def render_page(index_json: str, title: str) -> str:
    """index.html: ``index_json`` (already safe inside <script>) becomes ``window.EK_INDEX``."""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<title>entitykit view · {html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>{BODY}"
        f"<script>window.EK_INDEX = {index_json};</script>\n<script>{JS}</script>\n</body>\n</html>\n"
    )
