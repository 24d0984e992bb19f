//! Every WGSL kernel parses and validates with naga (no GPU needed); a failure names file and line.

#[test]
fn all_shaders_validate() {
    let kernels = spgnet::ops::all_kernels();
    assert!(kernels.len() >= 20, "expected every kernel to be listed, got {}", kernels.len());
    for k in kernels {
        let src = k.full_source();
        let path = format!("shaders/{}", k.file);
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{} ({}):\n{}", path, k.entry, e.emit_to_string_with_path(&src, &path)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} ({}):\n{}", path, k.entry, e.emit_to_string_with_path(&src, &path)));
        assert!(module.entry_points.iter().any(|e| e.name == k.entry), "{path}: no entry point {}", k.entry);
    }
}

/// wgpu's own front end is stricter than standalone naga (reserved words such as `target`):
/// build every kernel's pipeline on the adapter too.
#[test]
fn all_pipelines_build_on_the_adapter() {
    let gpu = spgnet::gpu::Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e:#}"));
    for k in spgnet::ops::all_kernels() {
        gpu.pipeline(&k);
        if let Err(e) = gpu.check() {
            panic!("shaders/{} ({}): {e}", k.file, k.entry);
        }
    }
}

/// The adapter check in Gpu::new counts storage bindings per kernel: the most is BatchNorm's
/// backward with a two-term gradient (9), within what Vulkan, Metal (31) and DX12 offer.
#[test]
fn kernels_bind_few_enough_storage_buffers() {
    let most = spgnet::ops::max_storage_bindings();
    assert_eq!(
        most,
        spgnet::gpu::STORAGE_BUFFERS_NEEDED,
        "the most storage buffers a kernel binds changed: update gpu::STORAGE_BUFFERS_NEEDED"
    );
    assert_eq!(most, 9, "the most storage buffers a kernel binds changed: update the docs and this test");
    let gpu = spgnet::gpu::Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e:#}"));
    assert!(gpu.limits.max_storage_buffers_per_shader_stage >= most);
}
