//! What a dispatch costs the adapter before its work: a trivial kernel (each lane adds 1 to one
//! value) dispatched DISPATCHES times in one pass, best of seven, by workgroup count and size,
//! once all writing one buffer (each dispatch waits for the one before) and once each its own.
//! `cargo bench --bench dispatch`.

use spgnet::gpu::{Access, Gpu, KernelSpec, Launch};
use std::time::Instant;

const DISPATCHES: usize = 400;

/// Each lane adds 1 to its value; LANES lanes a workgroup (appended per pipeline).
const ADD_ONE: &str = "struct P { len: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(LANES) fn add_one(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.len) { out[gid.x] = out[gid.x] + 1.0; }
}
";

/// Microseconds per dispatch of `launches`, best of seven runs after a warm-up.
fn us_per_dispatch(gpu: &Gpu, launches: &[Launch]) -> f64 {
    gpu.run(launches).unwrap();
    let best = (0..7)
        .map(|_| {
            let t = Instant::now();
            gpu.run(launches).unwrap();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    best / launches.len() as f64 * 1e6
}

fn main() {
    let gpu = Gpu::new().expect("needs an adapter");
    eprintln!("adapter: {}", gpu.describe());
    println!("lanes  workgroups  us/dispatch (one buffer)  (a buffer each)");
    for lanes in [8u32, 64] {
        // The lane count as a pipeline constant: pipelines are cached by (file, entry, constants).
        let spec = KernelSpec {
            file: "dispatch.wgsl",
            source: ADD_ONE,
            entry: "add_one",
            bindings: vec![Access::ReadWrite],
            constants: String::new(),
        }
        .with_const("LANES", lanes);
        for groups in [1u32, 4, 16, 64, 256] {
            let len = (groups * lanes) as usize;
            let params = gpu.params(&[len as u32, 0, 0, 0]);
            let shared = gpu.zeros(&[len], "shared");
            let one = gpu.launch("add_one", &spec, &params, &[&shared], [groups, 1, 1]);
            let chained = vec![one; DISPATCHES];
            let own: Vec<_> = (0..DISPATCHES).map(|_| gpu.zeros(&[len], "own")).collect();
            let apart: Vec<_> = own.iter().map(|t| gpu.launch("add_one", &spec, &params, &[t], [groups, 1, 1])).collect();
            let (a, b) = (us_per_dispatch(&gpu, &chained), us_per_dispatch(&gpu, &apart));
            println!("{lanes:5}  {groups:10}  {a:24.1}  {b:15.1}");
        }
    }
}
