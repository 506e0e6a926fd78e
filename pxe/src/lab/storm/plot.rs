//! The storm's plot: nodes in each stage over time, one line per stage,
//! as SVG (plotters' SVG backend: no font or image libraries).

use std::path::Path;

use plotters::prelude::*;

use super::StormError;
use super::node::Stage;
use super::report::StormReport;

/// One colour per stage, in [`Stage::ALL`] order.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0x17, 0x17),
];

/// The plot of `report` as SVG text.
pub fn svg(report: &StormReport) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let end = report.timeline.last().map_or(1.0, |s| s.t).max(0.1);
        let caption = format!(
            "{} nodes, {}, {}, loss {}%: nodes in each stage",
            report.nodes, report.mode, report.arrival, report.loss_percent
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..end, 0usize..report.nodes.max(1))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the storm began")
            .y_desc("nodes")
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, stage) in Stage::ALL.iter().enumerate() {
            let colour = COLOURS[k];
            let points = report.timeline.iter().map(|s| (s.t, s.counts[k]));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(stage.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Writes the plot of `report` to `path` (atomically).
pub fn write(report: &StormReport, path: &Path) -> Result<(), StormError> {
    let text = svg(report).map_err(|reason| StormError::Plot {
        path: path.to_owned(),
        reason,
    })?;
    super::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::storm::report::{Sample, ServerUsage};

    #[test]
    fn the_plot_is_svg_with_a_line_per_stage() {
        let report = StormReport {
            nodes: 2,
            mode: "full".into(),
            arrival: "all".into(),
            loss_percent: 1.0,
            delay_ms: 0,
            rootfs_bytes: 1,
            running: 2,
            firmware: Vec::new(),
            node_firmware: Vec::new(),
            time_to_all_running: Some(1.0),
            stages: Vec::new(),
            failures: Vec::new(),
            server: ServerUsage::default(),
            bytes: Default::default(),
            timeline: vec![
                Sample {
                    t: 0.0,
                    counts: vec![2, 0, 0, 0, 0, 0, 0, 0],
                },
                Sample {
                    t: 1.0,
                    counts: vec![0, 0, 0, 0, 0, 0, 0, 2],
                },
            ],
        };
        let svg = svg(&report).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        // A line and a legend entry per stage, each in its colour.
        for (k, stage) in Stage::ALL.iter().enumerate() {
            assert!(svg.contains(&format!("\n{}\n", stage.name())), "{stage:?}");
            let c = COLOURS[k];
            let hex = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
            assert!(svg.matches(&hex).count() >= 2, "{hex}");
        }
    }
}
