// The page: loads the demo, drives the wasm engine (src/web/), draws the
// results. All model computation happens in Rust (WebGPU or the CPU backend
// compiled to wasm); this file only fetches files, renders and listens.
//
// URL parameters: ?assets=URL (folder with manifest.json; default assets/),
// ?backend=cpu (skip WebGPU).

const params = new URLSearchParams(location.search);
const ASSETS = (params.get('assets') || 'assets/').replace(/\/?$/, '/');
const FORCE_CPU = params.get('backend') === 'cpu';

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of kids) e.append(c);
  return e;
};
const fmt = (x, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '–');

// Timings the end-to-end test reads (milliseconds since navigation start).
const timings = (window.sgrafTimings = { wasmReady: null, assetsFetched: null, engineReady: null, firstResult: null, queries: [] });

const state = {
  wasm: null,
  device: null,
  engine: null,
  info: null,
  manifest: null,
  files: null, // raw inputs of the current engine, reused by "bring your own"
  boxes: null, // [N][36][4] in picture pixels, or null
  pictureSize: null, // [W, H]
  pictures: [], // HTMLImageElement | null per image
  ranking: null, // last sentence → images ranking
  query: '',
  selected: 0,
  pairExplain: null, // {module: Explanation} for the selected image and the query
  hoverAttention: null, // [36] while a word is hovered
  captionRanking: null,
  captionsShown: 0,
  captionImage: null,
};

// ---------------------------------------------------------------- loading

function setProgress(frac, label) {
  const p = $('#progress');
  p.hidden = false;
  const pct = Math.round(Math.max(0, Math.min(1, frac)) * 100);
  p.setAttribute('aria-valuenow', String(pct));
  p.querySelector('.bar span').style.width = pct + '%';
  p.querySelector('.label').textContent = label;
}

function showMessage(text) {
  const m = $('#message');
  m.textContent = text;
  m.hidden = !text;
}

async function wasmBindings() {
  if (window.wasmBindings) return window.wasmBindings;
  await new Promise((resolve) => addEventListener('TrunkApplicationStarted', resolve, { once: true }));
  return window.wasmBindings;
}

/// Fetches `url` as bytes, calling onBytes(received, total) as it arrives.
async function fetchBytes(url, onBytes) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  const total = Number(r.headers.get('content-length')) || 0;
  if (!r.body || !total) {
    const b = new Uint8Array(await r.arrayBuffer());
    onBytes(b.length, b.length);
    return b;
  }
  const out = new Uint8Array(total);
  const reader = r.body.getReader();
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (got + value.length > out.length) throw new Error(`${url}: more bytes than its Content-Length`);
    out.set(value, got);
    got += value.length;
    onBytes(got, total);
  }
  return out.subarray(0, got);
}

async function chooseDevice(wasm) {
  let want = !FORCE_CPU;
  let reason = FORCE_CPU ? 'the page was asked for it (?backend=cpu)' : '';
  if (want && !navigator.gpu) {
    want = false;
    reason = 'this browser offers no WebGPU (navigator.gpu is undefined)';
  } else if (want) {
    try {
      const a = await navigator.gpu.requestAdapter();
      if (!a) {
        want = false;
        reason = 'navigator.gpu gave no adapter';
      }
    } catch (e) {
      want = false;
      reason = `navigator.gpu.requestAdapter failed (${e.message})`;
    }
  }
  const device = await wasm.Device.create(want, reason);
  const note = $('#backend-note');
  note.dataset.backend = device.kind;
  note.textContent = device.note;
  note.title = device.note;
  return device;
}

const nextFrame = () => new Promise((r) => setTimeout(r, 0));

/// Builds an engine from raw files; throws with a readable message.
async function buildEngine(files, onProgress) {
  const b = new state.wasm.DemoBuilder();
  try {
    for (const c of files.checkpoints) b.add_checkpoint(c.name, c.bytes);
    b.set_vocab(files.vocab.name, files.vocab.text);
    b.set_gallery(files.npy.name, files.npy.bytes, files.caps.name, files.caps.bytes);
    b.check();
  } catch (e) {
    b.free();
    throw e;
  }
  return await b.build(state.device, (what, done, total) => {
    onProgress(what, done, total);
    return nextFrame();
  });
}

function parseBoxes(text, n, source) {
  let boxes;
  try {
    boxes = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: not JSON (${e.message})`);
  }
  const ok =
    Array.isArray(boxes) &&
    boxes.length === n &&
    boxes.every((img) => Array.isArray(img) && img.length === 36 && img.every((b) => Array.isArray(b) && b.length === 4 && b.every(Number.isFinite)));
  if (!ok) throw new Error(`${source}: expected [[x0, y0, x1, y1] × 36] for each of the ${n} images`);
  return boxes;
}

async function loadDemo() {
  setProgress(0.02, 'Loading the WebAssembly module…');
  const wasm = (state.wasm = await wasmBindings());
  timings.wasmReady = performance.now();
  state.device = await chooseDevice(wasm);

  setProgress(0.05, 'Reading the manifest…');
  const mr = await fetch(ASSETS + 'manifest.json');
  if (!mr.ok) throw new Error(`${ASSETS}manifest.json: HTTP ${mr.status}. HINT: run \`sgraf demo\` to write web/assets/, or open the page with ?assets=<folder>`);
  const m = (state.manifest = await mr.json());
  if (m.version !== 1) throw new Error(`manifest.json: version ${m.version}; this page reads version 1`);

  const names = [...Object.values(m.checkpoints || {}), m.vocab, m.features, m.captions];
  if (m.boxes) names.push(m.boxes);
  const got = new Map();
  const totals = new Map();
  const progressBytes = () => {
    let a = 0, t = 0;
    for (const n of names) {
      a += got.get(n) || 0;
      t += totals.get(n) || 1;
    }
    setProgress(0.05 + 0.55 * (a / t), `Downloading the demo (${(a / 1e6).toFixed(1)} MB)…`);
  };
  const fetchOne = (n) =>
    fetchBytes(ASSETS + n, (a, t) => {
      got.set(n, a);
      totals.set(n, t);
      progressBytes();
    });
  const ckNames = Object.values(m.checkpoints || {});
  const [cks, vocabBytes, npy, caps, boxesBytes] = await Promise.all([
    Promise.all(ckNames.map(fetchOne)),
    fetchOne(m.vocab),
    fetchOne(m.features),
    fetchOne(m.captions),
    m.boxes ? fetchOne(m.boxes).catch(() => null) : Promise.resolve(null),
  ]);
  timings.assetsFetched = performance.now();
  const files = {
    checkpoints: ckNames.map((n, i) => ({ name: n, bytes: cks[i] })),
    vocab: { name: m.vocab, text: new TextDecoder().decode(vocabBytes) },
    npy: { name: m.features, bytes: npy },
    caps: { name: m.captions, bytes: caps },
    boxes: boxesBytes ? { name: m.boxes, text: new TextDecoder().decode(boxesBytes) } : null,
  };
  await installEngine(files, m, (frac, label) => setProgress(0.6 + 0.4 * frac, label));
}

/// Builds an engine from `files`, and only when that worked replaces the current one.
async function installEngine(files, manifest, progress) {
  const engine = await buildEngine(files, (what, done, total) => progress(total ? done / total : 1, `${what[0].toUpperCase()}${what.slice(1)}…`));
  const info = JSON.parse(engine.info());
  let boxes = null;
  if (files.boxes) {
    try {
      boxes = parseBoxes(files.boxes.text, info.images, files.boxes.name);
    } catch (e) {
      showMessage(`${e.message}; drawing a grid of regions instead.`);
    }
  }
  const old = state.engine;
  state.engine = engine;
  state.info = info;
  state.files = files;
  state.boxes = boxes;
  state.pictureSize = manifest && manifest.picture_size ? manifest.picture_size : null;
  state.pictures = new Array(info.images).fill(null);
  if (manifest && manifest.pictures) loadPictures(manifest.pictures, info.images);
  state.selected = 0;
  state.captionRanking = null;
  state.captionImage = null;
  if (old) setTimeout(() => old.free(), 5000); // after any query still running on it
  timings.engineReady = performance.now();
  $('#progress').hidden = true;
  buildGallery();
  renderExamples(manifest ? manifest.examples || [] : []);
  const q = $('#query');
  q.disabled = false;
  if (!q.value) q.value = (manifest && (manifest.examples || [])[0]) || info.captions[0];
  $('#captions').replaceChildren();
  $('#captions').dataset.image = '';
  $('#more-captions').hidden = true;
  await runQuery(q.value);
}

function loadPictures(pattern, n) {
  for (let i = 0; i < n; i++) {
    const url = ASSETS + pattern.replace(/\{:0?(\d*)\}/, (_, w) => String(i).padStart(Number(w) || 0, '0'));
    const img = new Image();
    img.onload = () => {
      state.pictures[i] = img;
      drawTile(i);
      if (i === state.selected) drawPair();
    };
    img.src = url;
  }
}

// ---------------------------------------------------------------- drawing

/// Region boxes of image i in picture pixels, and the picture size.
function regionsOf(i) {
  const pic = state.pictures[i];
  let [W, H] = state.pictureSize || (pic ? [pic.naturalWidth, pic.naturalHeight] : [0, 0]);
  let boxes = state.boxes ? state.boxes[i] : null;
  if (!W || !H) {
    if (boxes) {
      W = Math.max(...boxes.map((b) => b[2]));
      H = Math.max(...boxes.map((b) => b[3]));
    } else [W, H] = [600, 450];
  }
  if (!boxes) {
    // No boxes given: a 6 × 6 grid stands in for the 36 regions.
    boxes = [];
    for (let r = 0; r < 6; r++) for (let c = 0; c < 6; c++) boxes.push([(c * W) / 6, (r * H) / 6, ((c + 1) * W) / 6, ((r + 1) * H) / 6]);
  }
  return { boxes, W, H };
}

function drawImage(canvas, i, attention) {
  const ctx = canvas.getContext('2d');
  const cw = canvas.width, ch = canvas.height;
  const { boxes, W, H } = regionsOf(i);
  const s = Math.min(cw / W, ch / H);
  const ox = (cw - W * s) / 2, oy = (ch - H * s) / 2;
  ctx.clearRect(0, 0, cw, ch);
  ctx.fillStyle = '#eef1f5';
  ctx.fillRect(0, 0, cw, ch);
  const pic = state.pictures[i];
  if (pic) ctx.drawImage(pic, ox, oy, W * s, H * s);
  else {
    const hue = (i * 47) % 360;
    const g = ctx.createLinearGradient(ox, oy, ox + W * s, oy + H * s);
    g.addColorStop(0, `hsl(${hue} 45% 78%)`);
    g.addColorStop(1, `hsl(${(hue + 40) % 360} 45% 62%)`);
    ctx.fillStyle = g;
    ctx.fillRect(ox, oy, W * s, H * s);
    ctx.fillStyle = 'rgba(20, 30, 45, 0.55)';
    ctx.font = `600 ${Math.round(ch / 9)}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(`image ${i}`, cw / 2, ch / 2);
  }
  const peak = attention ? Math.max(...attention) : 0;
  boxes.forEach((b, r) => {
    const x = ox + b[0] * s, y = oy + b[1] * s, w = (b[2] - b[0]) * s, h = (b[3] - b[1]) * s;
    if (attention) {
      const a = attention[r] / (peak || 1);
      ctx.fillStyle = `rgba(255, 176, 0, ${0.55 * a})`;
      ctx.fillRect(x, y, w, h);
      ctx.strokeStyle = `rgba(200, 80, 0, ${0.15 + 0.85 * a})`;
      ctx.lineWidth = 1 + 2.5 * a;
    } else {
      ctx.strokeStyle = 'rgba(255, 255, 255, 0.35)';
      ctx.lineWidth = 1;
    }
    ctx.strokeRect(x, y, w, h);
  });
}

function drawTile(i) {
  const c = document.querySelector(`#gallery li[data-image="${i}"] canvas`);
  if (c) drawImage(c, i, null);
}

function drawPair() {
  drawImage($('#pair-canvas'), state.selected, state.hoverAttention);
}

// ---------------------------------------------------------------- sentence → images

function buildGallery() {
  const g = $('#gallery');
  g.replaceChildren();
  for (let i = 0; i < state.info.images; i++) {
    const canvas = el('canvas', { width: '240', height: '180', 'aria-hidden': 'true' });
    const btn = el(
      'button',
      { type: 'button', class: 'tile', onclick: () => selectImage(i, true) },
      canvas,
      el('span', { class: 'rank' }),
      el('span', { class: 'score' }),
      el('span', { class: 'parts' }),
    );
    g.append(el('li', { 'data-image': String(i) }, btn));
    drawImage(canvas, i, null);
  }
}

function renderExamples(examples) {
  const box = $('#examples');
  box.replaceChildren();
  for (const ex of examples) {
    box.append(
      el('button', {
        type: 'button',
        class: 'example',
        text: ex,
        onclick: () => {
          $('#query').value = ex;
          scheduleQuery(0);
        },
      }),
    );
  }
}

let queryTimer = null;
let running = false;
let pending = null;
function scheduleQuery(delay = 150) {
  clearTimeout(queryTimer);
  queryTimer = setTimeout(() => runQuery($('#query').value), delay);
}

async function runQuery(text) {
  if (running) {
    pending = text;
    return;
  }
  running = true;
  try {
    await rankImages(text);
  } finally {
    running = false;
  }
  if (pending !== null) {
    const p = pending;
    pending = null;
    if (p !== state.query) await runQuery(p);
  }
}

async function rankImages(text) {
  const query = text.trim();
  if (!query || !state.engine) return;
  const t0 = performance.now();
  let r;
  try {
    r = JSON.parse(await state.engine.rank_images(query));
  } catch (e) {
    $('#query-words').replaceChildren(el('span', { class: 'error', text: e.message }));
    return;
  }
  const dt = performance.now() - t0;
  timings.queries.push(dt);
  state.ranking = r;
  state.query = query;
  const g = $('#gallery');
  const items = new Map([...g.children].map((li) => [Number(li.dataset.image), li]));
  r.order.forEach((i, pos) => {
    const li = items.get(i);
    const parts = r.models.map((m) => `${m.module} ${fmt(m.scores[i])}`).join(' · ');
    li.querySelector('.rank').textContent = `#${pos + 1}`;
    li.querySelector('.score').textContent = fmt(r.ensemble[i]);
    li.querySelector('.parts').textContent = parts;
    li.dataset.score = String(r.ensemble[i]);
    li.querySelector('button').setAttribute('aria-label', `Image ${i}: rank ${pos + 1}, score ${fmt(r.ensemble[i])} (${parts})`);
    g.append(li);
  });
  g.dataset.ms = dt.toFixed(1);
  const best = r.order[0];
  $('#rank-status').textContent = `${r.order.length} images ranked in ${Math.round(dt)} ms; best: image ${best}, score ${fmt(r.ensemble[best])}.`;
  selectImage(r.order[0], false);
  g.dataset.query = query;
  if (timings.firstResult === null) timings.firstResult = performance.now();
}

/// Selects gallery image i: explains the query for it; with `rankCaptions`
/// (a click) also ranks the gallery's captions for it.
function selectImage(i, rankCaptions) {
  state.selected = i;
  for (const li of $('#gallery').children) li.classList.toggle('selected', Number(li.dataset.image) === i);
  state.hoverAttention = null;
  explainPair();
  drawPair();
  if (rankCaptions) rankCaptionsFor(i);
}

function explainPair() {
  const r = state.ranking;
  if (!r) return;
  let ex;
  try {
    ex = JSON.parse(state.engine.explain(state.selected, JSON.stringify([state.query])));
  } catch (e) {
    $('#query-words').replaceChildren(el('span', { class: 'error', text: e.message }));
    return;
  }
  state.pairExplain = Object.fromEntries(ex.map((m) => [m.module, m.pairs[0]]));
  renderWords($('#query-words'), state.pairExplain, r.known);
  renderScores();
}

/// Shades the words of one caption by SAF weight (SGR global edges when
/// there is no SAF model). `byModule`: {SGR: Explanation, SAF: Explanation}.
function renderWords(container, byModule, known) {
  const saf = byModule.SAF, sgr = byModule.SGR;
  const main = saf || sgr;
  const weights = saf ? saf.saf_weights : sgr.sgr_global_edges;
  const label = saf ? 'SAF weight' : 'SGR edge';
  const idx = main.tokens.map((t, k) => k).filter((k) => !/^<(start|end)>$/.test(main.tokens[k]));
  const peak = Math.max(...idx.map((k) => weights[k])) || 1;
  const order = [...idx].sort((a, b) => weights[b] - weights[a]);
  container.replaceChildren();
  container.dataset.weights = saf ? 'saf' : 'sgr';
  idx.forEach((k, n) => {
    const w = weights[k];
    const rel = w / peak;
    const unknown = known && known[n] === false;
    const tip = [`${label} ${fmt(w)} (rank ${order.indexOf(k) + 1} of ${idx.length})`];
    if (saf && sgr) tip.push(`SGR edge ${fmt(sgr.sgr_global_edges[k])}`);
    if (unknown) tip.push('not in the vocabulary: read as <unk>');
    const span = el('span', {
      class: 'word' + (unknown ? ' unknown' : ''),
      tabindex: '0',
      title: tip.join(' · '),
      'data-token': main.tokens[k],
      'data-saf-weight': saf ? String(w) : '',
      'data-sgr-edge': sgr ? String(sgr.sgr_global_edges[k]) : '',
      'aria-label': `${main.tokens[k]}: ${tip.join(', ')}`,
      text: main.tokens[k],
    });
    span.style.setProperty('--w', rel.toFixed(3));
    const sub = el('sub', { class: 'weight', text: fmt(w, 2), 'aria-hidden': 'true' });
    span.append(sub);
    const show = () => {
      state.hoverAttention = main.region_attention[k];
      drawPair();
      const att = main.region_attention[k];
      const top = att.indexOf(Math.max(...att));
      $('#pair-caption').textContent = `“${main.tokens[k]}” looks most at region ${top} (attention ${fmt(att[top], 2)}); ${tip.join(', ')}.`;
    };
    const hide = () => {
      state.hoverAttention = null;
      drawPair();
      $('#pair-caption').textContent = pairCaption();
    };
    span.addEventListener('mouseenter', show);
    span.addEventListener('focus', show);
    span.addEventListener('mouseleave', hide);
    span.addEventListener('blur', hide);
    container.append(span, ' ');
  });
}

function pairCaption() {
  return `Image ${state.selected}. Hover or focus a word to see where it looks.`;
}

function renderScores() {
  const r = state.ranking;
  const i = state.selected;
  const dl = $('#scores');
  dl.replaceChildren();
  const pos = r.order.indexOf(i) + 1;
  for (const m of r.models) dl.append(el('dt', { text: m.module }), el('dd', { text: fmt(m.scores[i]), 'data-module': m.module }));
  dl.append(el('dt', { text: r.models.length > 1 ? 'SGRAF (mean)' : 'Score' }), el('dd', { class: 'mean', text: `${fmt(r.ensemble[i])} · rank ${pos} of ${r.order.length}` }));
  $('#pair-caption').textContent = pairCaption();
  renderExplainText();
}

function renderExplainText() {
  const r = state.ranking, i = state.selected, info = state.info, ex = state.pairExplain;
  const size = info.sizes[0];
  const any = ex.SAF || ex.SGR;
  const words = any.tokens.filter((t) => !/^<(start|end)>$/.test(t));
  const L = any.tokens.length;
  const score = (mod) => r.models.find((m) => m.module === mod)?.scores[i];
  const top = (w) => {
    const ks = any.tokens.map((t, k) => k).filter((k) => !/^<(start|end)>$/.test(any.tokens[k]));
    ks.sort((a, b) => w[b] - w[a]);
    return ks;
  };
  const p = [];
  p.push(`<p><b>Global similarity vector.</b> The image as a whole (self-attention over its 36 regions) is compared with the sentence as a whole: their squared difference, projected to ${size.sim_dim} numbers and normalised.</p>`);
  p.push(`<p><b>Local similarity vectors.</b> Each of the ${L} tokens (the ${words.length} words plus start and end marks) attends to the regions it matches (text-to-image attention, hover a word to see it) and is compared the same way: ${L} more vectors of ${size.sim_dim} numbers.</p>`);
  if (ex.SGR) {
    const e = ex.SGR.sgr_global_edges;
    const t = top(e);
    const steps = info.sgr_steps || 3;
    p.push(`<p><b>SGR</b> treats the ${L + 1} vectors as a graph and reasons over it for ${steps} steps, then scores the global node: <b>${fmt(score('SGR'))}</b>. In its last step the global node listens most to “${esc(any.tokens[t[0]])}” (edge ${fmt(e[t[0]])})${t.length > 1 ? ` and “${esc(any.tokens[t[1]])}” (${fmt(e[t[1]])})` : ''}.</p>`);
  }
  if (ex.SAF) {
    const w = ex.SAF.saf_weights;
    const t = top(w);
    const glob = 1 - w.reduce((a, b) => a + b, 0);
    const last = t[t.length - 1];
    p.push(`<p><b>SAF</b> weighs the vectors and keeps the informative ones: “${esc(any.tokens[t[0]])}” gets ${fmt(w[t[0]])}, “${esc(any.tokens[last])}” only ${fmt(w[last])}, the global vector ${fmt(glob)}. Its score: <b>${fmt(score('SAF'))}</b>.</p>`);
  }
  if (ex.SGR && ex.SAF) p.push(`<p><b>SGRAF</b> averages the two: (${fmt(score('SGR'))} + ${fmt(score('SAF'))}) / 2 = <b>${fmt(r.ensemble[i])}</b>.</p>`);
  $('#explain-text').innerHTML = p.join('');
}

function esc(s) {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

// ---------------------------------------------------------------- image → sentences

async function rankCaptionsFor(i) {
  const list = $('#captions');
  $('#captions-hint').textContent = `Ranking ${state.info.captions.length} captions for image ${i}…`;
  let r;
  try {
    r = JSON.parse(await state.engine.rank_captions(i));
  } catch (e) {
    $('#captions-hint').textContent = e.message;
    return;
  }
  if (state.selected !== i) return;
  state.captionRanking = r;
  state.captionImage = i;
  state.captionsShown = 0;
  list.replaceChildren();
  list.dataset.image = String(i);
  $('#captions-hint').textContent = `Captions ranked for image ${i}; ✓ marks the ones written for it.`;
  showMoreCaptions();
}

function showMoreCaptions() {
  const list = $('#captions');
  const r = state.captionRanking, i = state.captionImage;
  const from = state.captionsShown, to = Math.min(r.order.length, from + 8);
  const caps = r.order.slice(from, to).map((k) => state.info.captions[k]);
  let ex;
  try {
    ex = JSON.parse(state.engine.explain(i, JSON.stringify(caps)));
  } catch (e) {
    $('#captions-hint').textContent = e.message;
    return;
  }
  r.order.slice(from, to).forEach((k, n) => {
    const byModule = Object.fromEntries(ex.map((m) => [m.module, m.pairs[n]]));
    const words = el('p', { class: 'words' });
    renderWords(words, byModule, null);
    const own = Math.floor(k / state.info.captions_per_image) === i;
    const parts = r.models.map((m) => `${m.module} ${fmt(m.scores[k])}`).join(' · ');
    list.append(
      el(
        'li',
        { 'data-caption': String(k), class: own ? 'own' : '' },
        el('span', { class: 'rank', text: `#${from + n + 1}` }),
        words,
        el('span', { class: 'score', text: `${fmt(r.ensemble[k])}`, title: parts }),
        el('span', { class: 'mark', text: own ? '✓' : '', title: own ? 'written for this image' : '' }),
      ),
    );
  });
  state.captionsShown = to;
  $('#more-captions').hidden = to >= r.order.length;
}

// ---------------------------------------------------------------- bring your own

async function readFile(f) {
  return new Uint8Array(await f.arrayBuffer());
}

async function bringYourOwn(fileList) {
  const msg = $('#byo-message');
  const say = (text, kind) => {
    msg.textContent = text;
    msg.dataset.kind = kind;
  };
  const files = [...fileList];
  if (!files.length) return;
  const next = { ...state.files, checkpoints: [] };
  let npy = null, caps = null, boxes = null, vocab = null;
  const unknown = [];
  for (const f of files) {
    const n = f.name.toLowerCase();
    if (/\.(safetensors|pth|tar|pt)$/.test(n)) next.checkpoints.push({ name: f.name, bytes: await readFile(f) });
    else if (n.endsWith('.npy')) npy = { name: f.name, bytes: await readFile(f) };
    else if (n.endsWith('.txt')) caps = { name: f.name, bytes: await readFile(f) };
    else if (n.endsWith('.json') && n.includes('box')) boxes = { name: f.name, text: await f.text() };
    else if (n.endsWith('.json')) vocab = { name: f.name, text: await f.text() };
    else unknown.push(f.name);
  }
  if (unknown.length) return say(`Not used: ${unknown.join(', ')} — expected .safetensors/.pth.tar, vocabulary .json, *_ims.npy, *_caps.txt or *_boxes.json.`, 'error');
  if (!next.checkpoints.length) next.checkpoints = state.files.checkpoints;
  if (vocab) next.vocab = vocab;
  if (npy || caps) {
    if (!npy || !caps) return say('A gallery needs both its *_ims.npy and its *_caps.txt file.', 'error');
    next.npy = npy;
    next.caps = caps;
    next.boxes = boxes;
  } else if (boxes) next.boxes = boxes;
  say('Loading your files…', 'busy');
  try {
    const keepManifest = npy ? { examples: [] } : state.manifest;
    await installEngine(next, keepManifest, (frac, label) => say(`${label} ${Math.round(frac * 100)}%`, 'busy'));
    if (npy) state.manifest = keepManifest;
    const info = state.info;
    say(`Loaded: ${info.modules.join(' + ')} on ${info.images} images and ${info.captions.length} captions.`, 'ok');
  } catch (e) {
    say(`Could not use these files: ${e.message || e}. The page keeps the previous demo.`, 'error');
  }
}

function setupDrop() {
  const drop = $('#drop');
  const input = $('#files');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    bringYourOwn(e.dataTransfer.files);
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener('change', () => {
    bringYourOwn(input.files);
    input.value = '';
  });
  // Dropping a file anywhere else must not navigate away from the page.
  addEventListener('dragover', (e) => e.preventDefault());
  addEventListener('drop', (e) => e.preventDefault());
}

// ---------------------------------------------------------------- start

$('#query').addEventListener('input', () => scheduleQuery());
$('#query').addEventListener('keydown', (e) => {
  if (e.key === 'Enter') scheduleQuery(0);
});
$('#more-captions').addEventListener('click', showMoreCaptions);
setupDrop();
loadDemo().catch((e) => {
  console.error(e);
  $('#progress').hidden = true;
  showMessage(`The demo could not load: ${e.message || e}`);
});
