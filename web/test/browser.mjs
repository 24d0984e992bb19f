// The page in a real headless Chromium (Debian's, WebGPU on SwiftShader): the contract of
// window.spgnet checked against the native program and the Paddle golden step.
// usage: node web/test/browser.mjs DIST NATIVE_INFER_JSON GOLDEN_DIR SCREENSHOT
//   DIST: the built page (scripts/build_web.sh); NATIVE_INFER_JSON: `spgnet infer --json` on
//   assets/samples/*; GOLDEN_DIR: ../shared/golden/s2p6-b16-32 (skipped where missing).
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFileSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, extname, basename, dirname, resolve } from 'node:path';

const [distArg, nativeJson, goldenDir, screenshot] = process.argv.slice(2);
const dist = resolve(distArg);
const failures = [];
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (!ok) failures.push(what); };

// A static server for DIST on a free port.
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = createServer((req, res) => {
  const path = join(dist, decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/$/, '/index.html'));
  if (!path.startsWith(dist) || !existsSync(path)) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' });
  res.end(readFileSync(path));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 }, acceptDownloads: true });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`  console: ${m.text()}`); });
  // bytes cross into the page as base64 (a number per byte would cost gigabytes of JSON)
  await page.addInitScript(() => {
    window.fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    window.toB64 = (u) => {
      let s = '';
      for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
      return btoa(s);
    };
  });
  const b64 = (path) => readFileSync(path).toString('base64');
  await page.goto(url);
  const ready = await page.evaluate(() => window.spgnet.ready);
  check(typeof ready.adapter === 'string', `ready: adapter ${ready.adapter}`);

  // classify: the same top-1 as native `spgnet infer --json`, probabilities within 1e-3
  const native = readFileSync(nativeJson, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  for (const n of native) {
    const r = await page.evaluate((b) => window.spgnet.classify(window.fromB64(b), 5), b64(n.image));
    const diff = Math.max(...n.top.map((t) => {
      const ours = r.top.find((x) => x.class === t.class);
      return ours ? Math.abs(ours.prob - t.prob) : 1;
    }));
    check(r.top[0].class === n.top[0].class && diff <= 1e-3,
      `classify ${basename(n.image)}: ${r.top[0].name} ${(100 * r.top[0].prob).toFixed(2)}% (native ${n.top[0].name} ${(100 * n.top[0].prob).toFixed(2)}%), max prob difference ${diff.toExponential(1)}, ${r.ms.toFixed(1)} ms`);
  }

  // every conv path on this browser's compiler against the CPU reference (lavapipe's and
  // Chromium's compilers differ: a kernel must be right on both)
  const shapes = [
    [2, 8, 4, 4, 8, 1, 3, 1], [2, 16, 8, 8, 16, 2, 3, 1], [3, 12, 7, 7, 24, 2, 3, 2], [2, 3, 9, 9, 12, 1, 3, 2],
    [4, 48, 2, 2, 48, 6, 3, 1], [4, 96, 2, 2, 96, 6, 3, 2], [4, 96, 2, 2, 96, 6, 3, 1], [3, 6, 5, 5, 6, 6, 3, 1],
    [2, 32, 4, 4, 96, 1, 1, 1], [2, 24, 3, 3, 192, 1, 1, 1], [8, 64, 1, 1, 40, 1, 1, 1], [2, 20, 6, 6, 20, 4, 3, 1],
    [3, 12, 5, 6, 12, 12, 3, 2], [2, 3, 8, 16, 12, 1, 3, 2], [2, 12, 6, 16, 24, 1, 3, 2], [3, 48, 8, 8, 48, 6, 3, 2],
    [8, 48, 4, 4, 48, 6, 3, 1],
  ];
  for (const [n, cin, h, w, cout, groups, k, stride] of shapes) {
    const shape = { n, cin, h, w, cout, groups, k, stride };
    const r = await page.evaluate((s) => window.spgnet.checkConv(s), shape);
    const worst = Math.max(r.forward, r.backward_data, r.backward_weight);
    check(worst <= 1e-4, `conv ${n}x${cin}x${h}x${w} -> ${cout}, groups ${groups}, ${k}x${k} stride ${stride}: errors ${r.forward.toExponential(1)} / ${r.backward_data.toExponential(1)} / ${r.backward_weight.toExponential(1)}`);
  }

  // a bad upload: a clear message, no exception escaping the page
  const bad = await page.evaluate(() => window.spgnet.classify(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 5).then(() => 'accepted', (e) => e.message));
  check(/not a readable image/.test(bad) && /PNG/.test(bad), `a non-image is refused: "${bad}"`);
  const badWeights = await page.evaluate(() => window.spgnet.loadWeights(new Uint8Array([9, 9, 9])).then(() => 'accepted', (e) => e.message));
  check(/not a valid safetensors file/.test(badWeights), `a corrupt weights file is refused: "${badWeights}"`);

  // debugStep on the golden: compare_step.py's rule
  if (existsSync(join(goldenDir, 'expected.safetensors'))) {
    const t0 = Date.now();
    const out = await page.evaluate(([w, b]) => window.spgnet.debugStep(window.fromB64(w), window.fromB64(b), 2).then(window.toB64),
      [b64(join(goldenDir, 'weights.safetensors')), b64(join(goldenDir, 'batch.safetensors'))]);
    const ours = safetensors(Buffer.from(out, 'base64'));
    const expected = safetensors(readFileSync(join(goldenDir, 'expected.safetensors')));
    const baseline = safetensors(readFileSync(join(goldenDir, 'expected-f32.safetensors')));
    let failed = 0, worst = ['', 0];
    for (const [name, e] of Object.entries(expected)) {
      const x = ours[name];
      if (!x || x.shape.join() !== e.shape.join() || !x.data.every(Number.isFinite)) { failed++; console.log(`  ${name}: missing, misshapen or non-finite`); continue; }
      const err = relL2(x.data, e.data);
      const allowed = Math.max(1e-3, 3 * relL2(baseline[name].data, e.data));
      if (err / allowed > worst[1]) worst = [name, err / allowed];
      if (err > allowed) { failed++; console.log(`  ${name}: error ${err.toExponential(2)} > allowed ${allowed.toExponential(2)}`); }
    }
    check(failed === 0, `debugStep on ${basename(goldenDir)}: ${Object.keys(expected).length - failed} of ${Object.keys(expected).length} tensors within compare_step.py's rule (worst ${worst[0]} at ${worst[1].toFixed(2)}x allowed), ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } else {
    console.log(`NOT RUN: debugStep golden check: ${goldenDir} is missing`);
  }

  // train: 20 steps on the bundled subset, finite and falling losses
  const tr = await page.evaluate(() => window.spgnet.train({ version: 's2p6', steps: 20, batch: 32, lr: 0.02, seed: 1 }));
  const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
  const [first, last] = [mean(tr.losses.slice(0, 5)), mean(tr.losses.slice(-5))];
  check(tr.losses.length === 20 && tr.losses.every(Number.isFinite) && last < first,
    `train 20 steps: loss ${first.toFixed(3)} (first 5) -> ${last.toFixed(3)} (last 5), ${tr.img_per_s.toFixed(1)} img/s`);

  // bench: both throughputs measured
  const bench = await page.evaluate(() => window.spgnet.bench({ batch: 8, size: 32, steps: 2 }));
  check(bench.train_img_per_s > 0 && bench.infer_img_per_s > 0, `bench (batch 8, 32x32): train ${bench.train_img_per_s.toFixed(1)}, inference ${bench.infer_img_per_s.toFixed(1)} img/s`);

  // exportOnnx: byte for byte what native `spgnet export --onnx` writes (scripts/test_web.sh),
  // and the page's link downloads it
  const nativeOnnx = readFileSync(join(dirname(screenshot), 'native.onnx'));
  const pageOnnx = Buffer.from(await page.evaluate(() => window.spgnet.exportOnnx().then(window.toB64)), 'base64');
  const [onnxDownload] = await Promise.all([page.waitForEvent('download'), page.click('#onnx-download')]);
  const downloaded = readFileSync(await onnxDownload.path());
  check(pageOnnx.equals(nativeOnnx) && downloaded.equals(nativeOnnx),
    `exportOnnx and the "Download it as ONNX" link (${onnxDownload.suggestedFilename()}): the ${nativeOnnx.length} bytes native spgnet export --onnx writes`);

  // compare.html: the shipped model, exported to ONNX by the page, in onnxruntime-web's WebGPU
  // execution provider beside spgnet's kernels on the same adapter and input
  const cmp = await browser.newPage();
  cmp.on('pageerror', (e) => errors.push(`compare.html: ${e.message}`));
  cmp.on('console', (m) => { if (m.type() === 'error') console.log(`  compare.html console: ${m.text()}`); });
  await cmp.goto(url + 'compare.html');
  const cready = await cmp.evaluate(() => window.compare.ready);
  const compared = [];
  for (const batch of [16, 1]) {
    const r = await cmp.evaluate((b) => window.compare.run({ batch: b, runs: 5 }), batch);
    compared.push(r);
    check(r.max_rel_diff <= 1e-4 && r.spgnet_img_per_s > 0 && r.ort_img_per_s > 0,
      `compare.html (ONNX file ${(cready.onnxBytes / 1e6).toFixed(1)} MB), batch ${batch} of ${r.channels}x${r.size}x${r.size}: spgnet ${r.spgnet_img_per_s.toFixed(1)} img/s, ONNX Runtime Web ${r.ort_version} (WebGPU EP) ${r.ort_img_per_s.toFixed(1)} img/s, logits agree to ${r.max_rel_diff.toExponential(1)}`);
  }
  mkdirSync(dirname(screenshot), { recursive: true });
  writeFileSync(join(dirname(screenshot), 'compare.json'), JSON.stringify(compared, null, 1));
  await cmp.close();

  // the page as a visitor sees it: a classified sample and a short training curve
  await page.setInputFiles('#image-file', native[0].image);
  await page.waitForSelector('#top li');
  await page.evaluate(() => { document.getElementById('epochs').value = '1'; document.getElementById('batch').value = '32'; });
  await page.click('#start');
  await page.waitForFunction(() => /step [4-9]\d/.test(document.getElementById('train-line').textContent), null, { timeout: 600000 });
  await page.click('#stop');
  // the weights the page trained, for the native program to load (scripts/test_web.sh)
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  await download.saveAs(join(dirname(screenshot), 'browser-trained.safetensors'));
  console.log(`downloaded: ${download.suggestedFilename()}`);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
  check(errors.length === 0, `no uncaught exception on the page${errors.length ? ': ' + errors.join('; ') : ''}`);
} finally {
  await browser.close();
}

// Without WebGPU (Chromium on Linux exposes it only with the flag): one sentence saying so and
// what to do, `ready` rejected with it, the buttons disabled, no uncaught exception.
const plain = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-webgpu'] });
try {
  const page = await plain.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  const why = await page.evaluate(() => window.spgnet.ready.then(() => 'ready', (e) => e.message));
  const shown = await page.textContent('#problem');
  check(/WebGPU/.test(why) && shown === why && errors.length === 0, `without WebGPU: "${why}"`);
} finally {
  await plain.close();
  server.close();
}
if (failures.length) { console.log(`${failures.length} failed`); process.exit(1); }
console.log('all passed');

// Named f32 (or i64) tensors of a safetensors file.
function safetensors(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'F32') continue;
    const [a, b] = t.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    out[name] = { shape: t.shape, data: Array.from(data) };
  }
  return out;
}

function relL2(x, e) {
  let d = 0, m = 0;
  for (let i = 0; i < e.length; i++) { d += (x[i] - e[i]) ** 2; m += e[i] ** 2; }
  return Math.sqrt(d) / Math.max(Math.sqrt(m), 1e-6);
}
