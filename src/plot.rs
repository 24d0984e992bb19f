//! Pictures (PNG, or JPEG / BMP by the file's extension): learning curves like the notebook's,
//! the confusion matrix and the prediction grid. Text uses a vendored DejaVu Sans, so
//! no system fonts are needed.

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A line chart of several named series over x, written atomically.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    register_font();
    save_via_tmp(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let points: Vec<&(f64, f64)> = series.iter().flat_map(|s| s.1.iter()).filter(|p| p.1.is_finite()).collect();
        let (mut x0, mut x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if points.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-9 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        (y0, y1) = (y0 - pad, y1 + pad);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 14)).draw().map_err(|e| anyhow!("plot: {e}"))?;
        let colors = [BLUE, RED, GREEN, MAGENTA];
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(|e| anyhow!("plot: {e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        root.present().map_err(|e| anyhow!("plot: {e}"))
    })
}

/// The picture formats the drawing backend writes, chosen by the file name's extension.
const PICTURE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// Refuses, before any work is done, a picture path that cannot be written: an extension the
/// encoder does not know or a folder that does not exist.
pub fn check_picture_path(path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !ext.as_deref().is_some_and(|e| PICTURE_EXTENSIONS.contains(&e)) {
        bail!("{}: pictures are written as .png, .jpg or .bmp: give the file one of those extensions", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: cannot write: the folder {} does not exist (create it or choose another path)", path.display(), dir.display());
    }
    Ok(())
}

/// Draws through a temporary file beside `path` (files::write_via_tmp), so a picture is never
/// left half-written.
fn save_via_tmp(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_picture_path(path)?;
    crate::files::write_via_tmp(path, draw)
}

/// A confusion matrix (rows: true class, columns: predicted) as a heat map with counts.
pub fn confusion_matrix(path: &Path, classes: &[String], m: &[Vec<usize>]) -> Result<()> {
    register_font();
    let k = classes.len();
    let cell = (600 / k.max(1)).clamp(6, 60) as i32;
    let (left, top) = (150, 60);
    let size = (left as u32 + cell as u32 * k as u32 + 20, top as u32 + cell as u32 * k as u32 + 40);
    save_via_tmp(path, |tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        root.draw(&Text::new("confusion matrix (rows: true class, columns: predicted, by number)", (10, 15), ("sans-serif", 18)))
            .map_err(|e| anyhow!("plot: {e}"))?;
        let label = |i: usize| format!("{i} {}", classes[i].chars().take(16).collect::<String>());
        for (t, row) in m.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let frac = count as f64 / total;
                let shade = (255.0 * (1.0 - frac)) as u8;
                let color = if t == p { RGBColor(shade, shade, 255) } else { RGBColor(255, shade, shade) };
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], color.filled())).map_err(|e| anyhow!("plot: {e}"))?;
                if cell >= 24 && count > 0 {
                    // white on the dark cells, where black would not read
                    let ink = if frac > 0.5 { &WHITE } else { &BLACK };
                    let style = ("sans-serif", (cell / 3).min(14)).into_font().color(ink);
                    root.draw(&Text::new(count.to_string(), (x + 3, y + cell / 3), style)).map_err(|e| anyhow!("plot: {e}"))?;
                }
            }
            if cell >= 10 {
                root.draw(&Text::new(label(t), (5, top + t as i32 * cell + cell / 3), ("sans-serif", 12)))
                    .map_err(|e| anyhow!("plot: {e}"))?;
                let number = t.to_string();
                root.draw(&Text::new(number, (left + t as i32 * cell + cell / 3, top - 18), ("sans-serif", 12)))
                    .map_err(|e| anyhow!("plot: {e}"))?;
            }
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))
    })
}

/// One labelled tile of a prediction grid.
pub struct GridTile<'a> {
    /// u8 planes [channels, size, size]
    pub pixels: &'a [u8],
    pub channels: usize,
    pub size: usize,
    pub predicted: &'a str,
    pub truth: &'a str,
}

/// The notebook's picture: test images with predicted and true labels, wrong ones in red.
pub fn prediction_grid(path: &Path, tiles: &[GridTile], columns: usize) -> Result<()> {
    register_font();
    let cols = columns.max(1);
    let rows = tiles.len().div_ceil(cols).max(1);
    let (img, label_h) = (112i32, 34i32);
    let (cw, ch) = (img + 24, img + label_h + 10);
    save_via_tmp(path, |tmp| {
        let root = BitMapBackend::new(tmp, (cols as u32 * cw as u32 + 10, rows as u32 * ch as u32 + 10)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        for (i, t) in tiles.iter().enumerate() {
            let (x0, y0) = (10 + (i % cols) as i32 * cw, 10 + (i / cols) as i32 * ch);
            let right = t.predicted == t.truth;
            let color = if right { RGBColor(0, 120, 0) } else { RGBColor(200, 0, 0) };
            if !right {
                root.draw(&Rectangle::new([(x0 - 3, y0 - 3), (x0 + img + 2, y0 + img + 2)], color.stroke_width(3)))
                    .map_err(|e| anyhow!("plot: {e}"))?;
            }
            let plane = t.size * t.size;
            for y in 0..img {
                for x in 0..img {
                    let (sy, sx) = (y as usize * t.size / img as usize, x as usize * t.size / img as usize);
                    let at = sy * t.size + sx;
                    let px = if t.channels == 1 {
                        RGBColor(t.pixels[at], t.pixels[at], t.pixels[at])
                    } else {
                        RGBColor(t.pixels[at], t.pixels[plane + at], t.pixels[2 * plane + at])
                    };
                    root.draw_pixel((x0 + x, y0 + y), &px).map_err(|e| anyhow!("plot: {e}"))?;
                }
            }
            let short = |s: &str| s.chars().take(16).collect::<String>();
            let style = ("sans-serif", 13).into_font().color(&color);
            root.draw(&Text::new(format!("pred: {}", short(t.predicted)), (x0, y0 + img + 4), style.clone()))
                .map_err(|e| anyhow!("plot: {e}"))?;
            root.draw(&Text::new(format!("true: {}", short(t.truth)), (x0, y0 + img + 19), ("sans-serif", 13).into_font().color(&BLACK)))
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))
    })
}
