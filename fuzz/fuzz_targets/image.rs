#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(img) = spgnet::data::decode_image(data) {
        let _ = spgnet::data::to_planes(&img, 1, 8);
    }
});
