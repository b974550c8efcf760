//! The report's picture: an SVG timeline (plotters, SVG backend) of the
//! open, committed and expired-or-failed rotations, and, below it, the
//! calls per second of each operation with a published quota against that
//! quota.

use plotters::prelude::*;

use crate::report::Report;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The timeline as an SVG document.
///
/// # Errors
/// When plotters cannot draw (it reports its backend's error as text).
pub fn svg(report: &Report) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 760)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(400);
        let hours = report.rotations_per_hour.len().max(1) as f64;
        let cumulative = |v: &[u64]| -> Vec<(f64, f64)> {
            let mut sum = 0u64;
            v.iter()
                .enumerate()
                .map(|(h, n)| {
                    sum += n;
                    ((h + 1) as f64, sum as f64)
                })
                .collect()
        };
        let committed = cumulative(&report.rotations_per_hour);
        let bad = cumulative(&report.closed_unsuccessfully_per_hour);
        let open: Vec<(f64, f64)> = report
            .open_per_hour
            .iter()
            .enumerate()
            .map(|(h, n)| (h as f64, *n as f64))
            .collect();
        let y_max = committed
            .iter()
            .chain(&bad)
            .chain(&open)
            .map(|p| p.1)
            .fold(1.0, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(&top)
            .caption(
                format!(
                    "fleetcert plan: {} devices, makespan {:.1} h ({:.2}x the quota bound)",
                    report.devices, report.makespan_hours, report.makespan_over_bound
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..hours, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("hours since the first audit")
            .y_desc("rotations")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, series)) in [
            ("open", open),
            ("committed (cumulative)", committed),
            ("expired or failed (cumulative)", bad),
        ]
        .into_iter()
        .enumerate()
        {
            let color = COLORS[i];
            chart
                .draw_series(LineSeries::new(series, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;

        let quota_ops: Vec<(&String, &Vec<u64>, f64)> = report
            .operations_per_hour
            .iter()
            .filter_map(|(op, v)| {
                let o = lambdas::ports::Operation::from_name(op)?;
                o.default_quota_per_second()?;
                Some((op, v, report.operations.get(op).map_or(0.0, |c| c.quota)))
            })
            .collect();
        let rate_max = quota_ops.iter().map(|(_, _, q)| *q).fold(1.0, f64::max) * 1.15;
        let mut rates = ChartBuilder::on(&bottom)
            .caption(
                "calls per second (hourly average) of each quota'd operation; dashed: its quota",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..hours, 0.0..rate_max)
            .map_err(|e| e.to_string())?;
        rates
            .configure_mesh()
            .x_desc("hours since the first audit")
            .y_desc("requests / s")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (op, hourly, quota)) in quota_ops.into_iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = hourly
                .iter()
                .enumerate()
                .map(|(h, n)| (h as f64 + 0.5, *n as f64 / 3600.0))
                .collect();
            rates
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(op.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            rates
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, quota), (hours, quota)],
                    6,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
        }
        rates
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
