//! fleetcert's charts: named time series in, one self-contained SVG line
//! chart out, drawn by `plotters` with its SVG backend only (no fonts are
//! read, no bitmap, no C library: the SVG names its fonts and the browser
//! draws the text).
//!
//! `fleetcert simulate --html` draws its report with [`line_chart`]; a
//! planner can draw its projections with the same function. The crate
//! depends on no workspace crate, so whatever uses it pulls in nothing of
//! the harness.
//!
//! The SVG is what plotters writes: a [`Kind::Line`] series is one
//! `<polyline>` of its colour ([`colour_hex`]) with one point per data
//! point, a [`Kind::Points`] series one `<circle>` filled with its colour
//! per point;
//! the legend, in a strip right of the plot so that it never hides data,
//! follows with a two-point `<polyline>` (or one `<circle>`) of each
//! series' colour and a `<text>` of its name. The caption, the axis
//! descriptions and the tick labels are `<text>` elements (their content
//! padded with line breaks).

use plotters::prelude::*;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A line through the points (a quantity over time).
    #[default]
    Line,
    /// A dot per point, unconnected (values measured now and then: a line
    /// between two would show values nobody measured).
    Points,
}

/// One named series of `(x, y)` points, in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name, shown in the legend.
    pub name: String,
    /// Its points.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub kind: Kind,
}

impl Series {
    /// A line named `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            kind: Kind::Line,
        }
    }

    /// Dots named `name`.
    pub fn points(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            kind: Kind::Points,
            ..Series::new(name, points)
        }
    }
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    /// The caption above the plot.
    pub title: &'a str,
    /// The x axis's description (with its unit).
    pub x_label: &'a str,
    /// The y axis's description (with its unit).
    pub y_label: &'a str,
    /// The series, drawn in this order with [`PALETTE`]'s colours.
    pub series: &'a [Series],
    /// Width and height in pixels.
    pub size: (u32, u32),
    /// The x axis's range; `None`: the data's (charts shown together
    /// should share one, so that the same x is the same moment).
    pub x_range: Option<(f64, f64)>,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// A coordinate is NaN or infinite.
    #[error("series {series}: point {index} is not finite")]
    NotFinite {
        /// The series' name.
        series: String,
        /// The point's index.
        index: usize,
    },
    /// plotters failed to draw.
    #[error("drawing {title}: {reason}")]
    Draw {
        /// The chart's title.
        title: String,
        /// plotters' message.
        reason: String,
    },
}

/// The series' colours, in order (then again): distinguishable for the
/// common forms of colour blindness (Okabe and Ito's palette).
pub const PALETTE: [(u8, u8, u8); 7] = [
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (204, 121, 167),
    (230, 159, 0),
    (86, 180, 233),
    (0, 0, 0),
];

/// The width of the legend strip right of the plot, pixels (at most a
/// third of the chart).
pub const LEGEND_WIDTH: u32 = 200;

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The colour of series `i` as the SVG writes it (`#0072B2`): a reader
/// of the SVG finds series `i` as the first `<polyline>` of that stroke,
/// its legend mark as the second.
pub fn colour_hex(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// The ranges that show every point, with a little room above; a single
/// value or no data still gives a drawable range.
fn ranges(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0_f64, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    ((x0, x1), (y0, y1 + (y1 - y0) * 0.08))
}

/// Draws `chart` as a line chart and returns the SVG document.
///
/// # Errors
/// [`PlotError::NotFinite`] for a NaN or infinite coordinate,
/// [`PlotError::Draw`] when plotters fails.
pub fn line_chart(chart: &Chart<'_>) -> Result<String, PlotError> {
    for s in chart.series {
        if let Some(index) = s
            .points
            .iter()
            .position(|(x, y)| !x.is_finite() || !y.is_finite())
        {
            return Err(PlotError::NotFinite {
                series: s.name.clone(),
                index,
            });
        }
    }
    let failed = |e: &dyn std::fmt::Display| PlotError::Draw {
        title: chart.title.to_owned(),
        reason: e.to_string(),
    };
    let ((mut x0, mut x1), (y0, y1)) = ranges(chart.series);
    if let Some((a, b)) = chart.x_range
        && a.is_finite()
        && b.is_finite()
        && b > a
    {
        (x0, x1) = (a, b);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, chart.size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let legend_width = LEGEND_WIDTH.min(chart.size.0 / 3);
        let (plot_area, legend_area) =
            root.split_horizontally(chart.size.0.saturating_sub(legend_width));
        let mut ctx = ChartBuilder::on(&plot_area)
            .caption(chart.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| failed(&e))?;
        ctx.configure_mesh()
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(244, 244, 244))
            .max_light_lines(2)
            .bold_line_style(RGBColor(215, 215, 215))
            .x_labels(8)
            .y_labels(6)
            .y_label_formatter(&|v| format_tick(*v))
            .x_label_formatter(&|v| format_tick(*v))
            .draw()
            .map_err(|e| failed(&e))?;
        for (i, s) in chart.series.iter().enumerate() {
            let style = ShapeStyle::from(colour(i)).stroke_width(2);
            match s.kind {
                Kind::Line => {
                    ctx.draw_series(LineSeries::new(s.points.iter().copied(), style))
                        .map_err(|e| failed(&e))?;
                }
                Kind::Points => {
                    // later series smaller, so that equal values show as
                    // rings
                    let r = dot_radius(chart.series, i);
                    ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, r, style.filled())))
                        .map_err(|e| failed(&e))?;
                }
            }
        }
        // the legend, in its own strip
        for (i, s) in chart.series.iter().enumerate() {
            let style = ShapeStyle::from(colour(i)).stroke_width(2);
            let y = 48 + 22 * i32::try_from(i).unwrap_or(0);
            match s.kind {
                Kind::Line => legend_area.draw(&PathElement::new(vec![(4, y), (26, y)], style)),
                Kind::Points => legend_area.draw(&Circle::new(
                    (15, y),
                    dot_radius(chart.series, i),
                    style.filled(),
                )),
            }
            .map_err(|e| failed(&e))?;
            legend_area
                .draw(&Text::new(
                    s.name.as_str(),
                    (32, y - 7),
                    ("sans-serif", 13).into_font().color(&BLACK),
                ))
                .map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

/// The radius of the dots of points series `i`: 2 px for the last points
/// series, 2 px more for each one after it.
fn dot_radius(series: &[Series], i: usize) -> u32 {
    let after = series[i + 1..]
        .iter()
        .filter(|s| s.kind == Kind::Points)
        .count();
    2 + 2 * u32::try_from(after).unwrap_or(0)
}

/// A tick label: integers without decimals, others with up to two.
fn format_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("well-formed SVG")
    }

    fn chart(series: &[Series]) -> String {
        line_chart(&Chart {
            title: "open rotations",
            x_label: "seconds since the audit",
            y_label: "rotations",
            series,
            size: (640, 360),
            x_range: None,
        })
        .expect("drawn")
    }

    /// The point counts of the polylines of series `i`'s colour.
    fn polylines_of(doc: &roxmltree::Document<'_>, i: usize) -> Vec<usize> {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(&colour_hex(i)))
            .map(|n| {
                n.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .collect()
    }

    fn texts<'a>(doc: &'a roxmltree::Document<'_>) -> Vec<&'a str> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect()
    }

    #[test]
    fn each_series_is_a_polyline_of_its_points_and_a_legend_entry() {
        let series = [
            Series::new(
                "open",
                (0..50).map(|i| (f64::from(i), f64::from(i % 7))).collect(),
            ),
            Series::new("queued", vec![(0.0, 3.0), (10.0, 1.0), (49.0, 0.0)]),
        ];
        let svg = chart(&series);
        let doc = parse(&svg);
        assert_eq!(
            polylines_of(&doc, 0),
            vec![50, 2],
            "the line, then its legend mark"
        );
        assert_eq!(polylines_of(&doc, 1), vec![3, 2]);
        let texts = texts(&doc);
        for want in [
            "open rotations",
            "seconds since the audit",
            "rotations",
            "open",
            "queued",
        ] {
            assert!(texts.contains(&want), "no text {want:?} in {texts:?}");
        }
    }

    #[test]
    fn a_points_series_is_a_circle_per_point() {
        let svg = chart(&[Series::points(
            "p99",
            vec![(1.0, 5.0), (3.0, 9.0), (4.0, 2.0)],
        )]);
        let doc = parse(&svg);
        let circles = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some(&colour_hex(0)))
            .count();
        assert_eq!(circles, 4, "three points and the legend's");
        assert!(texts(&doc).contains(&"p99"));
    }

    #[test]
    fn no_data_still_draws_the_axes() {
        let svg = chart(&[Series::new("open", Vec::new())]);
        let doc = parse(&svg);
        assert!(texts(&doc).contains(&"seconds since the audit"));
    }

    #[test]
    fn a_point_that_is_not_finite_is_refused() {
        let err = line_chart(&Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            series: &[Series::new("s", vec![(0.0, f64::NAN)])],
            size: (100, 100),
            x_range: None,
        })
        .expect_err("refused");
        assert!(err.to_string().contains("series s: point 0"), "{err}");
    }
}
