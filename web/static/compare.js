// spgnet's WGSL kernels against onnxruntime-web's WebGPU execution provider on the same model
// (the shipped one, exported to ONNX by spgnet in the page), the same input and the same adapter.
// window.compare.run({batch, runs}) is what the browser test calls.
import init, { start } from './pkg/spgnet_web.js';
import * as ort from './ort/ort.webgpu.bundle.min.mjs';

const $ = (id) => document.getElementById(id);

async function fetchBytes(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${r.statusText} (was the page built with scripts/build_web.sh?)`);
  return new Uint8Array(await r.arrayBuffer());
}

async function boot() {
  if (!navigator.gpu) throw new Error('This browser has no WebGPU: open the page in Chrome or Edge 113+, Safari 26+ or Firefox 141+.');
  await init();
  const engine = await start(await fetchBytes('model.safetensors'));
  const onnx = engine.exportOnnx(JSON.stringify({ batch: 'dynamic' }));
  const session = await ort.InferenceSession.create(onnx, { executionProviders: ['webgpu'] });
  const shape = JSON.parse(engine.modelShape());
  return { engine, session, shape, onnxBytes: onnx.length };
}

const ready = boot();

// Normalised random input, the same for both engines.
function randomInput(n, seed) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 4 - 2;
  }
  return out;
}

async function timeRuns(runs, once) {
  // warm-up: pipelines, buffers, shader compilation (SwiftShader keeps speeding up over the
  // first two runs)
  await once();
  await once();
  const t0 = performance.now();
  let last;
  for (let i = 0; i < runs; i++) last = await once();
  return { ms: (performance.now() - t0) / runs, last };
}

async function run({ batch = 16, runs = 5 } = {}) {
  const { engine, session, shape } = await ready;
  const [c, s] = [shape.channels, shape.size];
  const input = randomInput(batch * c * s * s, 12345);
  const spgnet = await timeRuns(runs, () => engine.logits(input, batch));
  const feeds = { input: new ort.Tensor('float32', input, [batch, c, s, s]) };
  const onnx = await timeRuns(runs, async () => (await session.run(feeds)).logits.getData(true));
  let scale = 1e-12, worst = 0;
  for (let i = 0; i < spgnet.last.length; i++) {
    scale = Math.max(scale, Math.abs(spgnet.last[i]));
    worst = Math.max(worst, Math.abs(spgnet.last[i] - onnx.last[i]));
  }
  return {
    batch, runs, size: s, channels: c,
    spgnet_img_per_s: (1000 * batch) / spgnet.ms,
    ort_img_per_s: (1000 * batch) / onnx.ms,
    max_rel_diff: worst / scale,
    ort_version: ort.env.versions?.web ?? 'unknown',
  };
}

window.compare = { ready: ready.then((r) => ({ onnxBytes: r.onnxBytes, shape: r.shape })), run };

function show(r) {
  const rows = [
    ['spgnet (WGSL kernels)', r.spgnet_img_per_s],
    [`ONNX Runtime Web ${r.ort_version} (WebGPU EP)`, r.ort_img_per_s],
  ];
  $('results').tBodies[0].replaceChildren(...rows.map(([name, ips]) => {
    const tr = document.createElement('tr');
    for (const v of [name, ips.toFixed(1), ((1000 * r.batch) / ips).toFixed(1)]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
  $('agreement').textContent = `Batch ${r.batch} of ${r.channels}x${r.size}x${r.size} inputs, ${r.runs} timed runs each after a warm-up; `
    + `the two engines' logits differ by at most ${r.max_rel_diff.toExponential(1)} of the largest.`;
}

ready.then((r) => {
  $('status').textContent = `Ready: the shipped model exported to ONNX (${(r.onnxBytes / 1e6).toFixed(1)} MB) and loaded in both engines.`;
  $('status').classList.add('ok');
  $('run').disabled = false;
}, (err) => {
  $('status').textContent = '';
  $('problem').textContent = err.message;
  $('problem').hidden = false;
});

$('run').addEventListener('click', async () => {
  $('run').disabled = true;
  $('problem').hidden = true;
  try {
    show(await run({ batch: Number($('batch').value), runs: Number($('runs').value) }));
  } catch (err) {
    $('problem').textContent = err.message;
    $('problem').hidden = false;
  } finally {
    $('run').disabled = false;
  }
});
