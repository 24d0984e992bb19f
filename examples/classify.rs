//! Classify images with the shipped Fashion-MNIST model (or `--weights`-style: pass a path to
//! `load_model`). `cargo run --release --example classify -- assets/samples/bag.png`
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let inputs = if args.is_empty() { vec![PathBuf::from("assets/samples")] } else { args };
    let gpu = spgnet::gpu::Gpu::new()?;
    let model = spgnet::infer::load_model(None)?; // Some(Path::new("run/best.safetensors")) for another
    let files = spgnet::infer::expand_inputs(&inputs)?; // a folder means every image in it
    for p in spgnet::infer::predict(&gpu, &model, &files, 3)? {
        let (_, name, prob) = &p.top[0];
        println!("{}: {name} ({:.1}%)", p.image, 100.0 * prob);
    }
    Ok(())
}
