#![no_main]
// Any bytes as a checkpoint file: an error or a checked model, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(f) = spgnet::checkpoint::TensorFile::from_bytes("fuzz".into(), data.to_vec()) {
        let _ = spgnet::checkpoint::from_file(&f);
        for n in f.names() {
            let _ = f.floats(&n);
            let _ = f.integers(&n);
        }
    }
});
