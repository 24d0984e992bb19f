//! spgnet in a web page: the library's portable core compiled to wasm32 with wgpu's WebGPU
//! backend. An `Engine` holds the device, the model to classify with, and a training session;
//! every method that touches the GPU returns a Promise. `web/static/app.js` wraps it as
//! `window.spgnet` and draws the page.

use anyhow::{anyhow, bail, Result};
use spgnet::checkpoint::{self, Checkpoint, Metadata};
use spgnet::classify::{top_k, Model};
use spgnet::data::{self, Dataset};
use spgnet::fit::{evaluate, learning_rate_at, train_step};
use spgnet::gpu::Gpu;
use spgnet::model::{ModelConfig, Variant};
use spgnet::network::{DeviceState, Evaluator, TrainOptions, Trainer};
use spgnet::onnx::{export, Batch, ExportOptions};
use spgnet::preprocess::{batch_count, conform, epoch_order, make_batch, Preprocess};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_time::Instant;

/// An error as JavaScript sees it: an Error whose message is the whole chain, one line.
fn js_error(e: anyhow::Error) -> JsValue {
    js_sys::Error::new(&format!("{e:#}")).into()
}

/// A Promise of what `work` returns, rejected with its error's message.
fn promise<T: Into<JsValue>>(work: impl std::future::Future<Output = Result<T>> + 'static) -> js_sys::Promise {
    future_to_promise(async move { work.await.map(Into::into).map_err(js_error) })
}

/// The model `classify` uses, with its device state, a one-image eval graph and the last
/// batched one kept between calls (rebuilt when other weights are loaded).
struct Classifier {
    model: Model,
    evaluator: Evaluator,
    batched: RefCell<Option<Rc<Evaluator>>>,
    state: DeviceState,
}

impl Classifier {
    fn new(gpu: &Gpu, model: Model) -> Result<Classifier> {
        let state = DeviceState::new(gpu, &model.ck)?;
        let evaluator = Evaluator::new(gpu, &state, 1, (model.size, model.size), 0.0)?;
        Ok(Classifier { model, evaluator, batched: RefCell::new(None), state })
    }

    /// An eval graph for `batch` images: the last one made if it has that batch.
    fn evaluator(&self, gpu: &Gpu, batch: usize) -> Result<Rc<Evaluator>> {
        let mut slot = self.batched.borrow_mut();
        match slot.as_ref() {
            Some(e) if e.batch() == batch => Ok(e.clone()),
            _ => {
                *slot = None; // free the old graph's buffers first
                let e = Rc::new(Evaluator::new(gpu, &self.state, batch, (self.model.size, self.model.size), 0.0)?);
                *slot = Some(e.clone());
                Ok(e)
            }
        }
    }
}

/// A training run in the page: the data, the trainer, where it stands.
struct Session {
    trainer: Trainer,
    train: Dataset,
    test: Dataset,
    pre: Preprocess,
    eval_pre: Preprocess,
    batch: usize,
    base_lr: f32,
    epochs: usize,
    seed: u64,
    meta: Metadata,
    step: Cell<usize>,
    evaluator: RefCell<Option<Rc<Evaluator>>>,
}

impl Session {
    fn steps_per_epoch(&self) -> usize {
        batch_count(self.train.len(), self.batch, true)
    }
}

/// Train and test images the page holds (the bundled subset, or the visitor's files).
struct Data {
    train: Dataset,
    test: Dataset,
}

#[wasm_bindgen]
pub struct Engine {
    gpu: Rc<Gpu>,
    classifier: RefCell<Rc<Classifier>>,
    data: RefCell<Option<Rc<Data>>>,
    session: RefCell<Option<Rc<Session>>>,
}

/// Open the browser's WebGPU adapter and load the model `weights` (safetensors bytes).
#[wasm_bindgen]
pub async fn start(weights: Vec<u8>) -> Result<Engine, JsValue> {
    let gpu = Gpu::request().await.map_err(js_error)?;
    let model = Model::from_bytes("the default model", weights).map_err(js_error)?;
    let classifier = Classifier::new(&gpu, model).map_err(js_error)?;
    Ok(Engine { gpu: Rc::new(gpu), classifier: RefCell::new(Rc::new(classifier)), data: RefCell::new(None), session: RefCell::new(None) })
}

/// The options a JS object (as JSON) gives, with defaults.
struct Options(serde_json::Value);

impl Options {
    fn parse(json: &str) -> Result<Options> {
        Ok(Options(serde_json::from_str(json).map_err(|e| anyhow!("options are not JSON ({e})"))?))
    }
    fn num(&self, key: &str, default: f64) -> Result<f64> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| anyhow!("option '{key}' must be a number, got {v}")),
        }
    }
    fn count(&self, key: &str, default: usize, max: usize) -> Result<usize> {
        let v = self.num(key, default as f64)?;
        if !(v >= 1.0 && v <= max as f64 && v.fract() == 0.0) {
            bail!("option '{key}' must be a whole number from 1 to {max}, got {v}");
        }
        Ok(v as usize)
    }
    fn text(&self, key: &str, default: &str) -> String {
        self.0.get(key).and_then(|v| v.as_str()).unwrap_or(default).to_string()
    }
}

#[wasm_bindgen]
impl Engine {
    /// Classify an image file's bytes (any format the native `infer` reads, any size): JSON
    /// `{"top": [{"class", "name", "prob"}], "ms"}`.
    pub fn classify(&self, bytes: Vec<u8>, top: usize) -> js_sys::Promise {
        let (gpu, c) = (self.gpu.clone(), self.classifier.borrow().clone());
        promise(async move {
            let t = Instant::now();
            let img = data::decode_image(&bytes).map_err(|e| anyhow!("this file is {e}: pick a PNG, JPEG, BMP, WebP or GIF image"))?;
            let (ch, s) = (c.model.channels(), c.model.size);
            let mut input = vec![0f32; ch * s * s];
            c.model.pre.apply(&data::to_planes(&img, ch, s), ch, s, &mut input, None);
            let logits = c.evaluator.logits(&gpu, &input).await?;
            let top: Vec<_> = top_k(&c.model, &logits, top)
                .into_iter()
                .map(|(k, name, p)| serde_json::json!({"class": k, "name": name, "prob": p}))
                .collect();
            Ok(serde_json::json!({"top": top, "ms": t.elapsed().as_secs_f64() * 1000.0}).to_string())
        })
    }

    /// The classify model's logits [batch, classes] for `batch` preprocessed images [batch, c, s,
    /// s] (normalised: what the ONNX export's `input` takes).
    pub fn logits(&self, input: Vec<f32>, batch: usize) -> js_sys::Promise {
        let (gpu, c) = (self.gpu.clone(), self.classifier.borrow().clone());
        promise(async move {
            if batch == 0 || batch > 1024 {
                bail!("batch must be from 1 to 1024, got {batch}");
            }
            let eval = c.evaluator(&gpu, batch)?;
            Ok(js_sys::Float32Array::from(&eval.logits(&gpu, &input).await?[..]))
        })
    }

    /// The classify model's input and output: JSON `{"channels", "size", "classes"}`.
    #[wasm_bindgen(js_name = modelShape)]
    pub fn model_shape(&self) -> String {
        let c = self.classifier.borrow();
        serde_json::json!({"channels": c.model.channels(), "size": c.model.size, "classes": c.model.ck.config.num_classes}).to_string()
    }

    /// The classify model as an ONNX file (what native `spgnet export --onnx` writes). Options
    /// (JSON): batch ("dynamic" or a number), foldBn (bool).
    #[wasm_bindgen(js_name = exportOnnx)]
    pub fn export_onnx(&self, options: &str) -> Result<js_sys::Uint8Array, JsValue> {
        let o = Options::parse(options).map_err(js_error)?;
        let batch = match o.0.get("batch") {
            Some(serde_json::Value::Number(n)) => Batch::parse(&n.to_string()),
            _ => Batch::parse(&o.text("batch", "dynamic")),
        }
        .map_err(js_error)?;
        let fold_bn = o.0.get("foldBn").and_then(|v| v.as_bool()).unwrap_or(false);
        let bytes = export(&self.classifier.borrow().model, ExportOptions { batch, fold_bn }).map_err(js_error)?;
        Ok(js_sys::Uint8Array::from(&bytes[..]))
    }

    /// Use these weights (safetensors bytes, any spgnet checkpoint) for `classify`.
    #[wasm_bindgen(js_name = loadWeights)]
    pub fn load_weights(&self, bytes: Vec<u8>) -> Result<(), JsValue> {
        let model = Model::from_bytes("the weights file", bytes).map_err(js_error)?;
        let c = Classifier::new(&self.gpu, model).map_err(js_error)?;
        *self.classifier.borrow_mut() = Rc::new(c);
        Ok(())
    }

    /// `steps` SGD steps on one batch, returning the file native `spgnet debug-step` writes.
    #[wasm_bindgen(js_name = debugStep)]
    pub fn debug_step(&self, weights: Vec<u8>, batch: Vec<u8>, steps: usize) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        promise(async move {
            let bytes = spgnet::debug_step::run_bytes(&gpu, weights, batch, steps, 0.1, TrainOptions::default()).await?;
            Ok(js_sys::Uint8Array::from(&bytes[..]))
        })
    }

    /// Training and test images from IDX files (MNIST format, gzipped or not): train images,
    /// train labels, test images, test labels. Returns a one-line description.
    #[wasm_bindgen(js_name = setIdxData)]
    pub fn set_idx_data(
        &self,
        train_images: Vec<u8>,
        train_labels: Vec<u8>,
        test_images: Vec<u8>,
        test_labels: Vec<u8>,
        fashion: bool,
    ) -> Result<String, JsValue> {
        let classes = data::idx_classes(if fashion { data::Kind::FashionMnist } else { data::Kind::Mnist });
        let split = |images: Vec<u8>, labels: Vec<u8>, what: &str| {
            let (images_at, labels_at) = (format!("the {what} images"), format!("the {what} labels"));
            data::idx_dataset("idx", (Path::new(&images_at), images), (Path::new(&labels_at), labels), &classes)
        };
        let d = (|| {
            Ok::<_, anyhow::Error>(Data {
                train: split(train_images, train_labels, "training")?,
                test: split(test_images, test_labels, "test")?,
            })
        })()
        .map_err(js_error)?;
        let line = format!("{} training and {} test images, {}x{}", d.train.len(), d.test.len(), d.train.h, d.train.w);
        *self.data.borrow_mut() = Some(Rc::new(d));
        Ok(line)
    }

    /// Training and test images from CIFAR-10 binary files (data_batch_*.bin, test_batch.bin).
    #[wasm_bindgen(js_name = setCifarData)]
    pub fn set_cifar_data(&self, train: Vec<js_sys::Uint8Array>, test: Vec<js_sys::Uint8Array>) -> Result<String, JsValue> {
        let classes: Vec<String> = data::CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
        let split = |files: &[js_sys::Uint8Array], what: &str| -> Result<Dataset> {
            if files.is_empty() {
                bail!("no {what} file given");
            }
            let bytes: Vec<Vec<u8>> = files.iter().map(|f| f.to_vec()).collect();
            let named: Vec<(String, &[u8])> = bytes.iter().enumerate().map(|(i, b)| (format!("{what} file {}", i + 1), &b[..])).collect();
            data::cifar_dataset("cifar10", &named, 1, &classes)
        };
        let d = (|| Ok::<_, anyhow::Error>(Data { train: split(&train, "training")?, test: split(&test, "test")? }))().map_err(js_error)?;
        let line = format!("{} training and {} test images, 32x32 RGB", d.train.len(), d.test.len());
        *self.data.borrow_mut() = Some(Rc::new(d));
        Ok(line)
    }

    /// Start a training run on the data set by setIdxData / setCifarData. Options (JSON):
    /// version (s2p6..s2p9), batch, lr, epochs, seed, size (default: the images' own).
    #[wasm_bindgen(js_name = trainStart)]
    pub fn train_start(&self, options: &str) -> Result<String, JsValue> {
        let s = self.new_session(options).map_err(js_error)?;
        let line = format!(
            "SPGNet {} on {} images of {}x{}, batch {}, {} steps per epoch",
            s.trainer.state.arch.config.variant.name(),
            s.train.len(),
            s.train.h,
            s.train.w,
            s.batch,
            s.steps_per_epoch()
        );
        *self.session.borrow_mut() = Some(Rc::new(s));
        Ok(line)
    }

    fn new_session(&self, options: &str) -> Result<Session> {
        let o = Options::parse(options)?;
        let d =
            self.data.borrow().clone().ok_or_else(|| anyhow!("no training data: load the bundled subset or pick dataset files first"))?;
        let version = Variant::parse(&o.text("version", "s2p6"))?;
        let batch = o.count("batch", 32, 1024)?;
        let lr = o.num("lr", 0.02)? as f32;
        if !(lr > 0.0 && lr <= 10.0) {
            bail!("option 'lr' must be in (0, 10], got {lr}");
        }
        let size = o.count("size", d.train.h, 256)?;
        let epochs = o.count("epochs", 1, 1000)?;
        let seed = o.num("seed", 1.0)? as u64;
        if batch < 2 || batch > d.train.len() {
            bail!("the batch must be from 2 to the {} training images, got {batch}", d.train.len());
        }
        let (mean, std) = d.train.mean_std();
        let channels = d.train.channels;
        let train = conform(&d.train, channels, size);
        let test = conform(&d.test, channels, size);
        let config = ModelConfig::new(version, channels, train.classes.len());
        let ck = Checkpoint::initialized(config, seed);
        let opts = TrainOptions { weight_decay: 1e-4, ..TrainOptions::default() };
        let trainer = Trainer::new(&self.gpu, &ck, batch, (size, size), opts)?;
        let meta = Metadata {
            input_size: Some(size),
            classes: Some(train.classes.clone()),
            mean: Some(mean.clone()),
            std: Some(std.clone()),
            dataset: Some(d.train.name.clone()),
        };
        Ok(Session {
            trainer,
            train,
            test,
            pre: Preprocess { mean: mean.clone(), std: std.clone(), pad: 2, flip: false },
            eval_pre: Preprocess { mean, std, pad: 0, flip: false },
            batch,
            base_lr: lr,
            epochs,
            seed,
            meta,
            step: Cell::new(0),
            evaluator: RefCell::new(None),
        })
    }

    fn session(&self) -> Result<Rc<Session>> {
        self.session.borrow().clone().ok_or_else(|| anyhow!("no training run: start one first"))
    }

    /// The next `steps` training steps of the run: JSON `{"step", "epoch", "lr", "losses",
    /// "accuracy", "img_per_s", "done"}` (losses per step; accuracy over these steps).
    #[wasm_bindgen(js_name = trainSteps)]
    pub fn train_steps(&self, steps: usize) -> js_sys::Promise {
        let (gpu, s) = (self.gpu.clone(), self.session());
        promise(async move {
            let s = s?;
            let per_epoch = s.steps_per_epoch();
            let total = per_epoch * s.epochs;
            let t = Instant::now();
            let (mut losses, mut correct, mut seen, mut lr) = (Vec::new(), 0.0, 0usize, 0.0);
            let mut order: Option<(usize, Vec<usize>)> = None; // the current epoch's, shuffled once
            while losses.len() < steps && s.step.get() < total {
                let step = s.step.get();
                let (epoch, b) = (step / per_epoch, step % per_epoch);
                if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    order = Some((epoch, epoch_order(s.train.len(), s.seed, epoch, true)));
                }
                let batch = make_batch(&s.train, &s.pre, &order.as_ref().unwrap().1, s.batch, (s.seed, epoch, b), true);
                lr = learning_rate_at(s.base_lr, step, per_epoch, total);
                let (loss, right) = train_step(&gpu, &s.trainer, &batch, lr, s.seed, step).await?;
                losses.push(loss);
                correct += right as f64;
                seen += s.batch;
                s.step.set(step + 1);
            }
            if let Some(e) = s.evaluator.borrow().as_ref() {
                e.weights_changed();
            }
            let secs = t.elapsed().as_secs_f64();
            Ok(serde_json::json!({
                "step": s.step.get(), "epoch": s.step.get() as f64 / per_epoch as f64, "lr": lr, "losses": losses,
                "accuracy": if seen > 0 { correct / seen as f64 } else { 0.0 },
                "img_per_s": if secs > 0.0 { seen as f64 / secs } else { 0.0 }, "done": s.step.get() >= total,
            })
            .to_string())
        })
    }

    /// The run's weights on its test images: JSON `{"loss", "accuracy", "images"}`.
    pub fn evaluate(&self) -> js_sys::Promise {
        let (gpu, s) = (self.gpu.clone(), self.session());
        promise(async move {
            let s = s?;
            let eval = {
                let mut cached = s.evaluator.borrow_mut();
                if cached.is_none() {
                    let batch = s.batch.min(s.test.len()).max(2);
                    *cached = Some(Rc::new(Evaluator::new(&gpu, &s.trainer.state, batch, (s.test.h, s.test.w), 0.1)?));
                }
                cached.clone().unwrap()
            };
            let (loss, accuracy) = evaluate(&gpu, &eval, &s.test, &s.eval_pre).await?;
            Ok(serde_json::json!({"loss": loss, "accuracy": accuracy, "images": s.test.len()}).to_string())
        })
    }

    /// The run's weights as a safetensors file (what native `spgnet eval --weights` reads).
    pub fn weights(&self) -> js_sys::Promise {
        let (gpu, s) = (self.gpu.clone(), self.session());
        promise(async move {
            let s = s?;
            let ck = s.trainer.state.to_checkpoint(&gpu, s.meta.clone()).await?;
            let mut extra = HashMap::new();
            extra.insert("spgnet.trained_in".to_string(), "browser".to_string());
            extra.insert("spgnet.steps".to_string(), s.step.get().to_string());
            Ok(js_sys::Uint8Array::from(&checkpoint::to_safetensors(&ck, false, extra)?[..]))
        })
    }

    /// Training-step and inference throughput on random data: JSON `{"train_img_per_s",
    /// "infer_img_per_s"}`. Options (JSON): batch, size, steps, version.
    pub fn bench(&self, options: &str) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        let options = options.to_string();
        promise(async move {
            let o = Options::parse(&options)?;
            let args = spgnet::bench::BenchArgs {
                version: Variant::parse(&o.text("version", "s2p6"))?,
                batch: o.count("batch", 64, 1024)?,
                size: o.count("size", 32, 256)?,
                steps: o.count("steps", 5, 1000)?,
                classes: 10,
                in_channels: 3,
                profile: false,
            };
            let r = spgnet::bench::run(&gpu, &args).await?;
            Ok(serde_json::json!({"train_img_per_s": r.train_img_per_s, "infer_img_per_s": r.infer_img_per_s, "train_step_ms": r.train_step_ms}).to_string())
        })
    }
}

#[wasm_bindgen]
impl Engine {
    /// Every direction of a convolution on this adapter against the f64 CPU reference, through
    /// the kernels the network would choose for that shape: JSON `{"forward", "backward_data",
    /// "backward_weight"}`, each max |error| / max |reference|. Shape (JSON): n, cin, h, w, cout,
    /// groups, k, stride.
    #[wasm_bindgen(js_name = checkConv)]
    pub fn check_conv(&self, shape: &str) -> js_sys::Promise {
        use rand::{Rng, SeedableRng};
        use spgnet::ops::conv::{self, ConvShape};
        use spgnet::reference as cpu;
        let gpu = self.gpu.clone();
        let shape = shape.to_string();
        promise(async move {
            let o = Options::parse(&shape)?;
            let d = |k: &str| o.count(k, 1, 4096);
            let s = ConvShape {
                n: d("n")?,
                cin: d("cin")?,
                h: d("h")?,
                w: d("w")?,
                cout: d("cout")?,
                groups: d("groups")?,
                k: d("k")?,
                stride: d("stride")?,
            };
            if !s.cin.is_multiple_of(s.groups) || !s.cout.is_multiple_of(s.groups) || s.k.is_multiple_of(2) {
                bail!("{s:?}: groups must divide the channels and k be odd");
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut random = |n: usize| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
            let (x, w, dy) = (
                random(s.input_shape().iter().product()),
                random(s.weight_shape().iter().product()),
                random(s.output_shape().iter().product()),
            );
            let (xt, wt, dyt) =
                (gpu.upload(&x, &s.input_shape(), "x"), gpu.upload(&w, &s.weight_shape(), "w"), gpu.upload(&dy, &s.output_shape(), "dy"));
            let (y, dx, dw) = (gpu.zeros(&s.output_shape(), "y"), gpu.zeros(&s.input_shape(), "dx"), gpu.zeros(&s.weight_shape(), "dw"));
            let mut launches = conv::forward(&gpu, &s, &xt, &wt, &y);
            launches.extend(conv::backward_data(&gpu, &s, &dyt, &wt, &dx));
            launches.extend(conv::backward_weight(&gpu, &s, &dyt, &xt, &dw));
            gpu.submit(&launches);
            let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let err = |got: &[f32], want: &[f64]| {
                let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
                got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs())) / scale
            };
            let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
            Ok(serde_json::json!({
                "forward": err(&gpu.read_async(&y).await?, &cpu::conv_forward(&s, &x64, &w64)),
                "backward_data": err(&gpu.read_async(&dx).await?, &cpu::conv_backward_data(&s, &dy64, &w64)),
                "backward_weight": err(&gpu.read_async(&dw).await?, &cpu::conv_backward_weight(&s, &dy64, &x64)),
            })
            .to_string())
        })
    }
}
