//! `spgnet summary`: per-layer output shape, parameters and multiply-adds, like paddle.summary.

use crate::model::{Architecture, ConvBnDef, Skip, HEAD_WIDTH};

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub output: Vec<usize>,
    /// Trainable values (weights, BN gamma and beta).
    pub params: usize,
    pub macs: usize,
}

fn convx(rows: &mut Vec<Row>, name: &str, c: &ConvBnDef, side: usize) -> usize {
    let out = c.out_size(side);
    let weights = c.cout * (c.cin / c.groups) * c.k * c.k;
    rows.push(Row {
        name: format!("{name} ({}x{} conv, groups {}{})", c.k, c.k, c.groups, if c.relu { ", BN, ReLU" } else { ", BN" }),
        output: vec![c.cout, out, out],
        params: weights + 2 * c.cout,
        macs: weights * out * out,
    });
    out
}

/// Rows for one image of `size` x `size`.
pub fn rows(arch: &Architecture, size: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut side = size;
    for (i, c) in arch.stem.iter().enumerate() {
        side = convx(&mut rows, &format!("first_conv.{i}"), c, side);
    }
    for b in &arch.blocks {
        let s_in = side;
        convx(&mut rows, &format!("{}.conv_in", b.name), &b.conv_in, s_in);
        side = convx(&mut rows, &format!("{}.conv1", b.name), &b.conv1, s_in);
        convx(&mut rows, &format!("{}.conv2", b.name), &b.conv2, side);
        convx(&mut rows, &format!("{}.conv_out", b.name), &b.conv_out, side);
        match &b.skip {
            Skip::Identity => {}
            Skip::Downsample(a, c) => {
                let s = convx(&mut rows, &format!("{}.skip.0-1", b.name), a, s_in);
                convx(&mut rows, &format!("{}.skip.2-3", b.name), c, s);
            }
            Skip::Project(a) => {
                convx(&mut rows, &format!("{}.skip.0-1", b.name), a, s_in);
            }
        }
    }
    convx(&mut rows, "conv_last", &arch.conv_last, side);
    rows.push(Row { name: "global average pool".into(), output: vec![HEAD_WIDTH], params: 0, macs: 0 });
    rows.push(Row {
        name: "fc (linear, BN1d, ReLU)".into(),
        output: vec![HEAD_WIDTH],
        params: HEAD_WIDTH * HEAD_WIDTH + 2 * HEAD_WIDTH,
        macs: HEAD_WIDTH * HEAD_WIDTH,
    });
    let k = arch.config.num_classes;
    rows.push(Row { name: "linear".into(), output: vec![k], params: k * HEAD_WIDTH, macs: k * HEAD_WIDTH });
    rows
}

pub fn table(arch: &Architecture, size: usize) -> String {
    let rows = rows(arch, size);
    let mut s = format!("{:<48} {:>16} {:>12} {:>14}\n", "layer", "output shape", "params", "mult-adds");
    for r in &rows {
        let shape = r.output.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        s.push_str(&format!("{:<48} {:>16} {:>12} {:>14}\n", r.name, shape, r.params, r.macs));
    }
    let params: usize = rows.iter().map(|r| r.params).sum();
    let macs: usize = rows.iter().map(|r| r.macs).sum();
    s.push_str(&format!(
        "total: {params} trainable values ({:.2} M), {} BN running statistics, {:.2} M multiply-adds per {size}x{size} image\n",
        params as f64 / 1e6,
        arch.state_count() - arch.trainable_count(),
        macs as f64 / 1e6
    ));
    s
}

/// (trainable values, multiply-adds) per image.
pub fn totals(arch: &Architecture, size: usize) -> (usize, usize) {
    let rows = rows(arch, size);
    (rows.iter().map(|r| r.params).sum(), rows.iter().map(|r| r.macs).sum())
}
