#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for (label_bytes, classes) in [(1, 10), (2, 100)] {
        let mut d = spgnet::data::Dataset { name: "fuzz".into(), images: vec![], labels: vec![], channels: 3, h: 32, w: 32, classes: vec![] };
        let _ = spgnet::data::parse_cifar("fuzz", data, label_bytes, classes, &mut d);
    }
});
