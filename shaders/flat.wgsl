// Shared by the flat kernels (elementwise.wgsl, pool.wgsl): EW lanes per workgroup over a grid
// that is 2-D when a tensor has more than 65535 * EW values (gpu::grid_1d on the host).

const EW: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * EW;
}
