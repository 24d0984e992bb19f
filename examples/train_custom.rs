//! Train SPGNet on data made in memory -- here 16x16 pictures of horizontal or vertical stripes
//! -- then save the model and classify with it. `cargo run --release --example train_custom`
use spgnet::data::Dataset;
use spgnet::fit::{fit, FitOptions};

/// Image i: stripes of random width, horizontal for even i, vertical for odd (the label).
fn stripes(i: usize) -> (Vec<u8>, u32) {
    let period = 2 + (i * 7919) % 4;
    let vertical = i % 2 == 1;
    let stripe = |p: usize| (if vertical { p % 16 } else { p / 16 }) / period;
    let pixels = (0..16 * 16).map(|p| if stripe(p).is_multiple_of(2) { 230 } else { 20 }).collect();
    (pixels, vertical as u32)
}

fn main() -> anyhow::Result<()> {
    let classes = ["horizontal", "vertical"];
    let train = Dataset::from_fn(256, 1, 16, &classes, stripes)?;
    let test = Dataset::from_fn(64, 1, 16, &classes, |i| stripes(i + 10_000))?;
    let gpu = spgnet::gpu::Gpu::new()?;
    let options = FitOptions { epochs: 8, batch: 32, lr: 0.05, ..FitOptions::default() };
    let (model, accuracy) = pollster::block_on(fit(&gpu, &train, &test, &options))?;
    println!("test accuracy after each epoch: {accuracy:?}");
    anyhow::ensure!(accuracy.last() >= Some(&0.9), "the stripes were not learnt: {accuracy:?}");
    let path = std::env::temp_dir().join("stripes.safetensors");
    spgnet::checkpoint::save(&path, &model)?; // `spgnet infer --weights` reads it too
    let model = spgnet::classify::Model::new(spgnet::checkpoint::load(&path)?);
    let (pixels, label) = stripes(99_999);
    let img = image::GrayImage::from_raw(16, 16, pixels).unwrap().into();
    let logits = pollster::block_on(spgnet::classify::classify(&gpu, &model, &[img]))?;
    let top = spgnet::classify::top_k(&model, &logits[0], 1);
    println!("a new picture of {} stripes: {} ({:.1}%), saved in {}", classes[label as usize], top[0].1, 100.0 * top[0].2, path.display());
    Ok(())
}
