// End-to-end test of the page in headless Chromium: the page served from the
// `trunk build` output on 127.0.0.1 ranks the gallery for a typed query
// exactly as the native `sgraf rank` does, on WebGPU and on the CPU fallback,
// and shows per-word SAF weights.
//
//   node --test web/e2e/e2e.test.mjs
//
// Environment (all optional):
//   SGRAF_DIST    the trunk output folder              (default: dist)
//   SGRAF_ASSETS  the demo asset folder (manifest.json)  (default: target/web-fixture,
//                 made by make-fixture.mjs; point it at web/assets for the real demo)
//   SGRAF_BIN     the native binary                      (default: target/release/sgraf)
//   SGRAF_QUERY   the query to type                      (default: the manifest's second example)
//   CHROMIUM      the browser                            (default: /usr/bin/chromium)
//   SGRAF_OUT     where screenshots and timings go       (default: target/e2e)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = resolve(repo, process.env.SGRAF_DIST || 'dist');
const ASSETS = resolve(repo, process.env.SGRAF_ASSETS || 'target/web-fixture');
const BIN = resolve(repo, process.env.SGRAF_BIN || 'target/release/sgraf');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = resolve(repo, process.env.SGRAF_OUT || 'target/e2e');
const TIMEOUT = 240_000;

for (const [what, p] of [['trunk build output (SGRAF_DIST)', join(DIST, 'index.html')], ['demo assets (SGRAF_ASSETS)', join(ASSETS, 'manifest.json')], ['native binary (SGRAF_BIN)', BIN], ['Chromium (CHROMIUM)', CHROMIUM]]) {
  if (!existsSync(p)) throw new Error(`${what} not found at ${p}`);
}
mkdirSync(OUT, { recursive: true });
const manifest = JSON.parse(readFileSync(join(ASSETS, 'manifest.json'), 'utf8'));
const QUERY = process.env.SGRAF_QUERY || manifest.examples?.[1] || manifest.examples?.[0];
assert.ok(QUERY, 'no query: set SGRAF_QUERY or give the manifest examples');

// ------------------------------------------------------------ static server
// dist/ at /, the asset folder at /assets/ (whatever dist/assets holds).
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json', '.png': 'image/png', '.txt': 'text/plain' };
let server, base;
function serve(req, res) {
  const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const [root, rel] = url.startsWith('/assets/') ? [ASSETS, url.slice('/assets/'.length)] : [DIST, url === '/' ? 'index.html' : url.slice(1)];
  const file = normalize(join(root, rel));
  if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end('not found');
    return;
  }
  const body = readFileSync(file);
  res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
}

// ------------------------------------------------------------ browser
const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const profiles = [];
async function launch(webgpu) {
  const dir = mkdtempSync(join(tmpdir(), 'sgraf-e2e-'));
  profiles.push(dir);
  const args = [...FLAGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : ['--disable-webgpu'])];
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args, viewport: { width: 1366, height: 900 } });
  const page = ctx.pages()[0] || (await ctx.newPage());
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  return { ctx, page, logs };
}

/// Loads the page, types the query, waits for its ranking; returns what the page shows.
async function runPage(page, logs, query) {
  await page.goto(base + '/', { timeout: TIMEOUT });
  try {
    await page.waitForFunction(() => document.querySelector('#gallery')?.dataset.query || document.querySelector('#message:not([hidden])'), null, { timeout: TIMEOUT });
  } catch (e) {
    throw new Error(`the page did not show a first result: ${e.message}\n${logs.join('\n')}`);
  }
  const msg = await page.$eval('#message', (m) => (m.hidden ? '' : m.textContent));
  assert.equal(msg, '', `the page reported an error:\n${logs.join('\n')}`);
  const first = await page.evaluate(() => ({ ...window.sgrafTimings }));
  await page.fill('#query', '');
  await page.type('#query', query, { delay: 20 });
  await page.waitForFunction((q) => document.querySelector('#gallery').dataset.query === q, query, { timeout: TIMEOUT });
  // the words are shaded for the selected (top) image once the ranking is in
  await page.waitForFunction(() => document.querySelectorAll('#query-words .word').length > 0, null, { timeout: TIMEOUT });
  return await page.evaluate(() => ({
    backend: document.querySelector('#backend-note').dataset.backend,
    note: document.querySelector('#backend-note').textContent,
    order: [...document.querySelectorAll('#gallery li')].map((li) => Number(li.dataset.image)),
    scores: [...document.querySelectorAll('#gallery li')].map((li) => Number(li.dataset.score)),
    words: [...document.querySelectorAll('#query-words .word')].map((w) => ({ token: w.dataset.token, saf: w.dataset.safWeight, title: w.title })),
    timings: { ...window.sgrafTimings },
  })).then((r) => ({ ...r, first }));
}

/// Times `n` queries against the whole gallery (ms each), as the page measures them.
async function timeQueries(page, queries) {
  const out = [];
  for (const q of queries) {
    await page.fill('#query', q);
    await page.waitForFunction((q) => document.querySelector('#gallery').dataset.query === q, q, { timeout: TIMEOUT });
    out.push(Number(await page.$eval('#gallery', (g) => g.dataset.ms)));
  }
  return out;
}

// ------------------------------------------------------------ rankings
// Scores of two backends differ by float rounding (~1e-7); candidates whose
// native scores are closer than TIE may come in either order. Anywhere else
// the page's ranking must be the native one, position by position.
const TIE = 1e-6;
function assertSameRanking(page, native, what) {
  assert.equal(page.order.length, native.order.length, `${what}: number of ranked images`);
  let reordered = 0;
  page.order.forEach((i, k) => {
    const j = native.order[k];
    if (i === j) return;
    reordered++;
    const gap = Math.abs(native.scores[i] - native.scores[j]);
    assert.ok(gap <= TIE, `${what}: position ${k + 1} shows image ${i}, sgraf rank has image ${j} (native scores ${native.scores[i]} vs ${native.scores[j]}); page order ${page.order.slice(0, 20)}…, native ${native.order.slice(0, 20)}…`);
  });
  return reordered;
}

// ------------------------------------------------------------ native reference
function nativeRanking(query) {
  const split = manifest.features.replace(/_ims\.npy$/, '');
  const cks = Object.values(manifest.checkpoints).flatMap((c) => ['--checkpoint', join(ASSETS, c)]);
  const out = execFileSync(BIN, ['rank', ...cks, '--data', ASSETS, '--split', split, '--vocab', join(ASSETS, manifest.vocab), '--query', query, '--backend', 'cpu', '--json'], { encoding: 'utf8' });
  return JSON.parse(out);
}

const results = {};
before(async () => {
  server = createServer(serve);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server?.close();
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
  const wasm = readdirSync(DIST).filter((f) => f.endsWith('.wasm')).map((f) => ({ file: f, bytes: statSync(join(DIST, f)).size }));
  const report = { query: QUERY, assets: ASSETS, wasm, ...results };
  writeFileSync(join(OUT, 'e2e-report.json'), JSON.stringify(report, null, 1));
  console.log(`e2e report (${join(OUT, 'e2e-report.json')}):\n${JSON.stringify(report, null, 1)}`);
});

test('WebGPU: the page ranks the gallery as the native binary does and shows SAF weights', { timeout: TIMEOUT * 3 }, async () => {
  const native = nativeRanking(QUERY);
  const { ctx, page, logs } = await launch(true);
  try {
    const r = await runPage(page, logs, QUERY);
    assert.equal(r.backend, 'webgpu', `expected the WebGPU path, the page says: ${r.note}\n${logs.join('\n')}`);
    const reordered = assertSameRanking(r, native, 'WebGPU');
    const maxDiff = Math.max(...r.order.map((i, k) => Math.abs(r.scores[k] - native.scores[i])));
    assert.ok(maxDiff < 1e-4, `scores differ from sgraf rank by ${maxDiff}`);
    assert.deepEqual(r.words.map((w) => w.token), native.tokens, 'the shaded words are the query tokens');
    for (const w of r.words) {
      const v = Number(w.saf);
      assert.ok(w.saf !== '' && Number.isFinite(v) && v > 0 && v < 1, `SAF weight of "${w.token}" shown as "${w.saf}"`);
      assert.match(w.title, /SAF weight \d\.\d{3}/, `weight readable on hover for "${w.token}"`);
    }
    // image → sentences: click the second-ranked image, its captions come ranked and shaded
    const second = r.order[1];
    await page.click(`#gallery li[data-image="${second}"] button`);
    await page.waitForFunction((i) => document.querySelector('#captions').dataset.image === String(i), second, { timeout: TIMEOUT });
    const caps = await page.$$eval('#captions li', (lis) => lis.map((li) => ({ k: Number(li.dataset.caption), own: li.classList.contains('own'), weights: [...li.querySelectorAll('.word')].map((w) => Number(w.dataset.safWeight)) })));
    assert.ok(caps.length > 0, 'captions ranked for the clicked image');
    assert.ok(caps.every((c) => c.weights.length > 0 && c.weights.every((w) => w > 0 && w < 1)), 'every caption shaded by SAF weights');
    const perImage = manifest.captions_per_image || 1;
    assert.ok(caps.every((c) => c.own === (Math.floor(c.k / perImage) === second)), "the image's own captions are marked");
    await page.hover('#query-words .word:nth-child(2)');
    await page.screenshot({ path: join(OUT, 'page-webgpu.png'), fullPage: true });
    const times = await timeQueries(page, [manifest.examples?.[0] || QUERY, QUERY, manifest.examples?.[2] || QUERY]);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(OUT, 'page-phone.png'), fullPage: false });
    results.webgpu = { note: r.note, images: r.order.length, exact_same_order: reordered === 0, near_tie_swaps: reordered, top10: r.order.slice(0, 10), native_top10: native.order.slice(0, 10), max_score_diff: maxDiff, first_result_ms: r.first.firstResult, timings: r.first, query_ms: times };
  } finally {
    await ctx.close();
  }
});

test('no WebGPU: the CPU fallback gives the same ranking and says why', { timeout: TIMEOUT * 3 }, async () => {
  const native = nativeRanking(QUERY);
  const { ctx, page, logs } = await launch(false);
  try {
    const r = await runPage(page, logs, QUERY);
    assert.equal(r.backend, 'cpu', `expected the CPU fallback, the page says: ${r.note}`);
    assert.match(r.note, /CPU backend/);
    const reordered = assertSameRanking(r, native, 'CPU fallback');
    const maxDiff = Math.max(...r.order.map((i, k) => Math.abs(r.scores[k] - native.scores[i])));
    assert.ok(maxDiff < 1e-5, `scores differ from sgraf rank by ${maxDiff}`);
    assert.ok(r.words.every((w) => Number(w.saf) > 0), 'SAF weights shown on the CPU path too');
    await page.screenshot({ path: join(OUT, 'page-cpu.png'), fullPage: true });
    const times = await timeQueries(page, [manifest.examples?.[0] || QUERY, QUERY]);
    results.cpu = { note: r.note, exact_same_order: reordered === 0, near_tie_swaps: reordered, max_score_diff: maxDiff, first_result_ms: r.first.firstResult, query_ms: times };
  } finally {
    await ctx.close();
  }
});

test('bring your own: a mismatched vocabulary is refused with a message and the page keeps working', { timeout: TIMEOUT * 2 }, async () => {
  const { ctx, page, logs } = await launch(true);
  try {
    await runPage(page, logs, QUERY);
    const bad = { name: 'vocab.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ idx2word: { 0: '<pad>', 1: '<start>', 2: '<end>', 3: '<unk>' }, word2idx: { '<pad>': 0, '<start>': 1, '<end>': 2, '<unk>': 3 }, idx: 4 })) };
    await page.setInputFiles('#files', [bad]);
    await page.waitForFunction(() => document.querySelector('#byo-message').dataset.kind === 'error', null, { timeout: TIMEOUT });
    const msg = await page.$eval('#byo-message', (m) => m.textContent);
    assert.match(msg, /4 words/, `message names the mismatch: ${msg}`);
    const broken = { name: 'test_ims.npy', mimeType: 'application/octet-stream', buffer: Buffer.from('not an npy file') };
    const caps = { name: 'test_caps.txt', mimeType: 'text/plain', buffer: Buffer.from('a caption\n') };
    await page.setInputFiles('#files', [broken, caps]);
    await page.waitForFunction((m) => document.querySelector('#byo-message').textContent !== m, msg, { timeout: TIMEOUT });
    const msg2 = await page.$eval('#byo-message', (m) => m.textContent);
    assert.match(msg2, /test_ims\.npy/, `message names the bad file: ${msg2}`);
    // still answers queries with the original demo
    const q = manifest.examples?.[0] || QUERY;
    await page.fill('#query', q);
    await page.waitForFunction((q) => document.querySelector('#gallery').dataset.query === q, q, { timeout: TIMEOUT });
    results.byo = { vocab_message: msg, npy_message: msg2 };
  } finally {
    await ctx.close();
  }
});
