// Writes a demo asset folder (the layout `sgraf demo` writes into web/assets/)
// from the golden CLI case beside the repository, for developing and testing
// the page before the real demo assets exist:
//
//   node web/e2e/make-fixture.mjs [OUT] [--images N]   (default: target/web-fixture, 6 images)
//
// With --images N > 6 the gallery is the 6 golden images repeated with a
// little seeded noise (and their captions repeated), for timing larger galleries.
//
// Checkpoints, vocabulary, features and captions are copied from
// ../shared/golden/small_float32_cli/<SGR|SAF>/; the region boxes are made up
// (deterministic), and there are no pictures (the page draws plain tiles).

import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const golden = resolve(repo, '../shared/golden/small_float32_cli');
const args = process.argv.slice(2);
const flag = args.indexOf('--images');
const wantImages = flag >= 0 ? Number(args.splice(flag, 2)[1]) : 0;
const out = resolve(args[0] || join(repo, 'target/web-fixture'));
mkdirSync(out, { recursive: true });

copyFileSync(join(golden, 'SGR/checkpoint.safetensors'), join(out, 'sgr.safetensors'));
copyFileSync(join(golden, 'SAF/checkpoint.safetensors'), join(out, 'saf.safetensors'));
for (const f of ['vocab.json', 'test_ims.npy', 'test_caps.txt']) copyFileSync(join(golden, 'SGR/data', f), join(out, f));

let captions = readFileSync(join(out, 'test_caps.txt'), 'utf8').trim().split('\n');
// The .npy header's shape: the first number is the image count.
const npy = readFileSync(join(out, 'test_ims.npy'));
const header = npy.subarray(0, 256).toString('latin1');
let n = Number(/'shape':\s*\((\d+),/.exec(header)[1]);
let seed = 1234;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
if (wantImages > n) {
  // Repeat the images with ±1% seeded noise; header rewritten for the new count.
  const hlen = npy.readUInt16LE(8) + 10;
  const src = new Float32Array(npy.buffer.slice(npy.byteOffset + hlen, npy.byteOffset + npy.length));
  const per = src.length / n;
  const data = new Float32Array(per * wantImages);
  for (let i = 0; i < wantImages; i++) for (let j = 0; j < per; j++) data[i * per + j] = src[(i % n) * per + j] * (1 + 0.02 * (rand() - 0.5));
  let h = `{'descr': '<f4', 'fortran_order': False, 'shape': (${wantImages}, 36, ${per / 36}), }`;
  h = h.padEnd(Math.ceil((h.length + 11) / 64) * 64 - 11, ' ') + '\n';
  const head = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(head);
  head[6] = 1;
  head.writeUInt16LE(h.length, 8);
  writeFileSync(join(out, 'test_ims.npy'), Buffer.concat([head, Buffer.from(h, 'latin1'), Buffer.from(data.buffer)]));
  captions = Array.from({ length: wantImages * (captions.length / n) }, (_, k) => captions[k % captions.length]);
  writeFileSync(join(out, 'test_caps.txt'), captions.join('\n') + '\n');
  n = wantImages;
}

// 36 boxes per image in a 600 × 450 picture, from a seeded generator.
const [W, H] = [600, 450];
const boxes = [];
for (let i = 0; i < n; i++) {
  const img = [];
  for (let r = 0; r < 36; r++) {
    const w = 60 + rand() * 240, h = 50 + rand() * 180;
    const x = rand() * (W - w), y = rand() * (H - h);
    img.push([x, y, x + w, y + h].map((v) => Math.round(v * 10) / 10));
  }
  boxes.push(img);
}
writeFileSync(join(out, 'test_boxes.json'), JSON.stringify(boxes));

const manifest = {
  version: 1,
  checkpoints: { sgr: 'sgr.safetensors', saf: 'saf.safetensors' },
  vocab: 'vocab.json',
  features: 'test_ims.npy',
  captions: 'test_caps.txt',
  boxes: 'test_boxes.json',
  pictures: 'test_img/{:05}.png',
  picture_size: [W, H],
  images: n,
  captions_per_image: captions.length / n,
  // The golden vocabulary is made-up words (w4 … w49): the examples are
  // captions of the set, one shortened, one with a word changed.
  examples: [captions[0], captions[2].split(' ').slice(0, 4).join(' '), captions[3].replace('w11', 'w12')],
};
writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest, null, 1));
console.log(`wrote the test demo assets (${n} images, ${captions.length} captions) to ${out}`);
