//! `sgraf plot`: the loss and dev-rsum curves of a training run, to PNG.
//! The official loss sits on a plateau for several epochs before it falls
//! (spec §9.3); these curves make that visible.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use sgraf::train::run::MetricsLine;

static FONT: &[u8] = include_bytes!("assets/DejaVuSans.ttf");

/// Reads `<out>/metrics.jsonl` and writes `<out>/loss.png` and `<out>/rsum.png`.
/// Returns the paths written.
pub fn plot(out: &Path) -> Result<Vec<std::path::PathBuf>> {
    let path = out.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut loss = Vec::new(); // (step, loss)
    let mut rsum = Vec::new(); // (step, dev rsum)
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let m: MetricsLine =
            serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if let Some(l) = m.loss {
            loss.push((m.step as f64, l as f64));
        }
        if let Some(d) = m.dev {
            rsum.push((m.step as f64, d.rsum));
        }
    }
    if loss.is_empty() && rsum.is_empty() {
        bail!("{} holds no logged steps yet", path.display());
    }
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let mut written = Vec::new();
    for (name, title, y_label, pts) in [
        ("loss.png", "training loss (hardest-negative triplet, sum over the batch)", "loss", &loss),
        ("rsum.png", "dev rsum (R@1+R@5+R@10, both directions)", "rsum", &rsum),
    ] {
        if pts.is_empty() {
            continue;
        }
        let file = out.join(name);
        draw(&file, title, y_label, pts).with_context(|| format!("drawing {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}

fn draw(file: &Path, title: &str, y_label: &str, pts: &[(f64, f64)]) -> Result<()> {
    let root = BitMapBackend::new(file, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))?;
    chart.configure_mesh().x_desc("step").y_desc(y_label).label_style(("sans-serif", 14)).draw()?;
    chart.draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))?;
    if pts.len() < 50 {
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
    }
    root.present()?;
    Ok(())
}
