// The page: window.spgnet (the programmatic contract tests and embedders use) over the wasm
// Engine, and the Classify and Train panels over window.spgnet.
import init, { start } from './pkg/spgnet_web.js';

const NO_WEBGPU = 'This browser has no WebGPU: open the page in Chrome or Edge 113+, Safari 26+ or Firefox 141+, with hardware acceleration on.';
const $ = (id) => document.getElementById(id);

async function fetchBytes(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${r.statusText} (was the page built with scripts/build_web.sh?)`);
  return new Uint8Array(await r.arrayBuffer());
}

// The engine, once WebGPU and the default model are up.
let adapterName = 'WebGPU adapter';

async function boot() {
  if (!navigator.gpu) throw new Error(NO_WEBGPU);
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('WebGPU is present but offers no adapter: turn on hardware acceleration in the browser settings, or try another browser.');
  const info = adapter.info ?? {};
  adapterName = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || adapterName;
  await init();
  return start(await fetchBytes('model.safetensors'));
}

const engineReady = boot();
let bundledLoaded = false;

async function useBundledData(engine) {
  if (bundledLoaded) return;
  const names = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];
  const [a, b, c, d] = await Promise.all(names.map((n) => fetchBytes(`data/${n}`)));
  $('data-line').textContent = 'Bundled Fashion-MNIST subset: ' + engine.setIdxData(a, b, c, d, true);
  bundledLoaded = true;
}

window.spgnet = {
  ready: engineReady.then(() => ({ adapter: adapterName })),
  async classify(bytes, topK = 5) {
    const e = await engineReady;
    return JSON.parse(await e.classify(bytes, topK));
  },
  async loadWeights(bytes) {
    const e = await engineReady;
    e.loadWeights(bytes);
  },
  // The classify model as ONNX bytes (what native `spgnet export --onnx` writes).
  async exportOnnx({ batch = 'dynamic', foldBn = false } = {}) {
    const e = await engineReady;
    return e.exportOnnx(JSON.stringify({ batch, foldBn }));
  },
  async debugStep(weights, batch, steps) {
    const e = await engineReady;
    return e.debugStep(weights, batch, steps);
  },
  async train({ version = 's2p6', steps = 20, batch = 32, lr = 0.02, seed = 1 } = {}) {
    const e = await engineReady;
    await useBundledData(e);
    e.trainStart(JSON.stringify({ version, batch, lr, seed, epochs: 1000 }));
    const r = JSON.parse(await e.trainSteps(steps));
    return { losses: r.losses, img_per_s: r.img_per_s };
  },
  // Every direction of one convolution on this GPU against the CPU reference (a self-check of
  // the kernels on this browser's compiler): {forward, backward_data, backward_weight} errors.
  async checkConv(shape) {
    const e = await engineReady;
    return JSON.parse(await e.checkConv(JSON.stringify(shape)));
  },
  async bench({ batch = 64, size = 32, steps = 5 } = {}) {
    const e = await engineReady;
    const r = JSON.parse(await e.bench(JSON.stringify({ batch, size, steps })));
    return { train_img_per_s: r.train_img_per_s, infer_img_per_s: r.infer_img_per_s };
  },
};

// Offers bytes to the visitor as a downloaded file.
function saveBytes(bytes, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  a.download = name;
  a.click();
}

function problem(message) {
  const p = $('problem');
  p.textContent = message;
  p.hidden = false;
}

// ---- Classify panel

// The classify model's file name without extension (names its ONNX download).
let modelStem = 'spgnet-s2p6-fashion-mnist';

function showTop(r) {
  const ol = $('top');
  ol.replaceChildren(...r.top.map((t) => {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = t.name;
    const bar = document.createElement('div');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(100 * t.prob).toFixed(1)}%`;
    bar.append(fill);
    const p = document.createElement('span');
    p.className = 'p';
    p.textContent = `${(100 * t.prob).toFixed(1)}%`;
    li.append(name, bar, p);
    return li;
  }));
  $('classify-time').textContent = `${r.ms.toFixed(1)} ms on the GPU, preprocessing included`;
}

async function classifyBytes(bytes, previewUrl) {
  $('problem').hidden = true;
  try {
    const r = await window.spgnet.classify(bytes, 5);
    $('preview').src = previewUrl;
    $('preview').hidden = false;
    showTop(r);
  } catch (err) {
    $('top').replaceChildren();
    $('classify-time').textContent = '';
    problem(err.message);
  }
}

async function classifyFile(file) {
  await classifyBytes(new Uint8Array(await file.arrayBuffer()), URL.createObjectURL(file));
}

function setUpClassify() {
  const drop = $('drop');
  drop.addEventListener('click', () => $('image-file').click());
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') $('image-file').click(); });
  $('image-file').addEventListener('change', (e) => e.target.files[0] && classifyFile(e.target.files[0]));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) classifyFile(e.dataTransfer.files[0]);
  });

  // A white pen on black, as Fashion-MNIST's images are light objects on a dark ground.
  const pad = $('pad');
  const ctx = pad.getContext('2d');
  const clear = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let drawing = false;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
  pad.addEventListener('pointerdown', (e) => { drawing = true; ctx.beginPath(); ctx.moveTo(...at(e)); pad.setPointerCapture(e.pointerId); });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e));
    ctx.strokeStyle = '#fff'; ctx.lineWidth = 18; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
    ctx.stroke();
  });
  pad.addEventListener('pointerup', () => { drawing = false; });
  $('clear-pad').addEventListener('click', clear);
  $('classify-drawing').addEventListener('click', () => pad.toBlob(async (blob) => {
    await classifyBytes(new Uint8Array(await blob.arrayBuffer()), pad.toDataURL());
  }, 'image/png'));

  $('onnx-download').addEventListener('click', async (e) => {
    e.preventDefault();
    try {
      saveBytes(await window.spgnet.exportOnnx(), `${modelStem}.onnx`);
    } catch (err) {
      problem(err.message);
    }
  });

  $('weights-file').addEventListener('change', async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    try {
      await window.spgnet.loadWeights(new Uint8Array(await f.arrayBuffer()));
      $('model-name').textContent = f.name;
      modelStem = f.name.replace(/\.safetensors$/, '');
      $('problem').hidden = true;
    } catch (err) {
      problem(`${f.name}: ${err.message}`);
    }
  });
}

// ---- Train panel

const curve = { losses: [], acc: [], test: [] }; // acc: [step, accuracy], test: [step, accuracy]
let running = false;

function drawChart() {
  const c = $('chart');
  const g = c.getContext('2d');
  const [w, h, pad] = [c.width, c.height, 36];
  g.clearRect(0, 0, w, h);
  g.font = '12px system-ui, sans-serif';
  g.fillStyle = '#5b6475';
  g.strokeStyle = '#e3e6ec';
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + (h - pad) * i / 4;
    g.beginPath(); g.moveTo(pad, y); g.lineTo(w - pad, y); g.stroke();
    g.fillText(`${100 - 25 * i}%`, w - pad + 4, y + 4);
  }
  const n = Math.max(curve.losses.length, 1);
  const maxLoss = Math.max(2.5, ...curve.losses);
  g.fillText(maxLoss.toFixed(1), 4, pad / 2 + 4);
  g.fillText('0', 4, h - pad / 2 + 4);
  g.fillText(`${curve.losses.length} steps`, w / 2 - 20, h - 4);
  const x = (i) => pad + (w - 2 * pad) * i / n;
  const line = (points, color, scaleY) => {
    if (!points.length) return;
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    points.forEach(([i, v], k) => { const y = pad / 2 + (h - pad) * (1 - scaleY(v)); k ? g.lineTo(x(i), y) : g.moveTo(x(i), y); });
    g.stroke();
  };
  line(curve.losses.map((v, i) => [i + 1, v]), '#2f6fde', (v) => Math.min(v / maxLoss, 1));
  line(curve.acc, '#e8833a', (v) => v);
  line(curve.test, '#2e9e5b', (v) => v);
  g.fillStyle = '#2e9e5b';
  curve.test.forEach(([i, v]) => { g.beginPath(); g.arc(x(i), pad / 2 + (h - pad) * (1 - v), 4, 0, 7); g.fill(); });
}

function trainOptions() {
  return { version: $('version').value, batch: +$('batch').value, lr: +$('lr').value, epochs: +$('epochs').value, seed: 1 };
}

async function pickedData(engine) {
  const kind = $('dataset').value;
  if (kind === 'bundled') return useBundledData(engine);
  const files = [...$('data-files').files];
  if (!files.length) throw new Error(kind === 'idx'
    ? 'Pick the four IDX files first: train-images, train-labels, t10k-images, t10k-labels (.gz or not).'
    : 'Pick CIFAR-10 binary files first: data_batch_*.bin and test_batch.bin.');
  bundledLoaded = false;
  const read = async (f) => new Uint8Array(await f.arrayBuffer());
  if (kind === 'idx') {
    const find = (part) => {
      const f = files.find((x) => x.name.includes(part));
      if (!f) throw new Error(`No file named like *${part}* among the picked files: pick the four IDX files of a MNIST-format dataset.`);
      return f;
    };
    const [a, b, c, d] = await Promise.all(['train-images', 'train-labels', 't10k-images', 't10k-labels'].map((p) => read(find(p))));
    $('data-line').textContent = engine.setIdxData(a, b, c, d, true);
  } else {
    const train = await Promise.all(files.filter((f) => f.name.startsWith('data_batch')).map(read));
    const test = await Promise.all(files.filter((f) => f.name.startsWith('test_batch')).map(read));
    $('data-line').textContent = engine.setCifarData(train, test);
  }
}

async function runTraining(engine) {
  running = true;
  $('stop').disabled = false; $('resume').disabled = true; $('start').disabled = true;
  try {
    let stepsPerEpoch = 0;
    while (running) {
      const r = JSON.parse(await engine.trainSteps(10));
      const before = curve.losses.length;
      curve.losses.push(...r.losses);
      if (r.losses.length) curve.acc.push([curve.losses.length, r.accuracy]);
      stepsPerEpoch = stepsPerEpoch || Math.round(r.step / r.epoch);
      const epochEnded = Math.floor(curve.losses.length / stepsPerEpoch) > Math.floor(before / stepsPerEpoch);
      $('train-line').textContent = `step ${r.step}, epoch ${r.epoch.toFixed(2)}, loss ${r.losses.at(-1)?.toFixed(4) ?? '-'}, ` +
        `accuracy ${(100 * r.accuracy).toFixed(1)}%, ${r.img_per_s.toFixed(1)} img/s, lr ${r.lr.toFixed(4)}`;
      if (epochEnded || r.done) {
        const t = JSON.parse(await engine.evaluate());
        curve.test.push([curve.losses.length, t.accuracy]);
        $('train-line').textContent += ` | test accuracy ${(100 * t.accuracy).toFixed(2)}% on ${t.images} images`;
      }
      drawChart();
      $('download').disabled = false;
      if (r.done) { running = false; $('start').disabled = false; $('resume').disabled = true; }
    }
  } catch (err) {
    running = false;
    problem(err.message);
    $('start').disabled = false;
  }
  $('stop').disabled = true;
}

function setUpTrain() {
  $('dataset').addEventListener('change', () => {
    const kind = $('dataset').value;
    if (kind !== 'bundled') {
      $('data-files').accept = kind === 'cifar' ? '.bin' : '.gz,.ubyte,*';
      $('data-files').click();
    }
  });
  $('data-files').addEventListener('change', () => {
    $('data-line').textContent = [...$('data-files').files].map((f) => f.name).join(', ');
  });
  $('start').addEventListener('click', async () => {
    $('problem').hidden = true;
    try {
      const e = await engineReady;
      await pickedData(e);
      $('data-line').textContent = e.trainStart(JSON.stringify(trainOptions()));
      Object.assign(curve, { losses: [], acc: [], test: [] });
      drawChart();
      runTraining(e);
    } catch (err) {
      problem(err.message);
    }
  });
  $('stop').addEventListener('click', () => { running = false; $('resume').disabled = false; $('start').disabled = false; });
  $('resume').addEventListener('click', async () => runTraining(await engineReady));
  $('download').addEventListener('click', async () => {
    try {
      saveBytes(await (await engineReady).weights(), `spgnet-${$('version').value}-browser.safetensors`);
    } catch (err) {
      problem(err.message);
    }
  });
  drawChart();
}

setUpClassify();
setUpTrain();
window.spgnet.ready.then(
  ({ adapter }) => { $('status').textContent = `WebGPU adapter: ${adapter}`; $('status').classList.add('ok'); },
  (err) => { $('status').textContent = 'WebGPU is not available.'; problem(err.message); document.querySelectorAll('button').forEach((b) => { b.disabled = true; }); },
);
