//! `keepwire bench --chart FILE.svg`: requests/s and p99 latency per mode, side by side.

use std::path::Path;

use keepwire::bench::PatternReport;
use plotters::prelude::*;

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Writes the chart: two bar panels, requests/s and p99 (µs), one bar per mode.
pub(crate) fn write(path: &Path, reports: &[PatternReport]) -> DrawResult {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    panel(&left, reports, "requests/s", |r| r.rps)?;
    panel(&right, reports, "p99 latency (us)", |r| r.p99_us as f64)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    reports: &[PatternReport],
    title: &str,
    value: impl Fn(&PatternReport) -> f64,
) -> DrawResult {
    let n = reports.len();
    let top = reports.iter().map(&value).fold(0.0f64, f64::max).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(30)
        .y_label_area_size(70)
        // A segmented range of 0..k has k + 1 segments: one per mode needs 0..n - 1 (and a
        // single bar needs at least one segment after it to end on).
        .build_cartesian_2d((0..(n.saturating_sub(1)).max(1)).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => reports
                .get(*i)
                .map_or(String::new(), |r| r.pattern.to_string()),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(reports.iter().enumerate().map(|(i, r)| {
        let color = Palette99::pick(i).mix(0.8);
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), value(r)),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 12, 12);
        bar
    }))?;
    Ok(())
}
