#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for rank in [1, 3] {
        let _ = spgnet::data::parse_idx(std::path::Path::new("fuzz"), data, rank);
    }
});
