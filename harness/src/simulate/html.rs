//! `fleetcert simulate --html`: the [`Report`] as one self-contained HTML
//! page (no script, no stylesheet or font fetched) with its charts as
//! inline SVG, drawn by the `plot` crate from the report's [`Timeline`]
//! (rotations over time, open rotations, latency percentiles, faults
//! injected).
//!
//! [`Timeline`]: super::Timeline

use plot::{Chart, Series, line_chart};

use super::report::Report;
use super::timeline::Sample;

/// The x axis of every chart.
pub const X_LABEL: &str = "seconds since the first audit";

/// Each chart of the page: `(title, y axis, series)`.
fn charts(report: &Report) -> Vec<(&'static str, &'static str, Vec<Series>)> {
    let t = &report.timeline;
    let count = |f: fn(&Sample) -> f64| t.series(move |s| Some(f(s)));
    vec![
        (
            "Rotations over time",
            "devices",
            vec![Series::new("devices rotated", count(|s| s.rotated as f64))],
        ),
        (
            "Open rotations over time",
            "rotations",
            vec![
                Series::new(
                    "open (or owing a cleanup)",
                    count(|s| s.open_rotations as f64),
                ),
                Series::new("waiting in the queue", count(|s| s.queued as f64)),
            ],
        ),
        (
            "Rotation latency (csr_req to crt_ack)",
            "milliseconds",
            vec![
                // measured only where rotations ended: dots, no line
                // across the samples where none did
                Series::points("p50", t.series(|s| s.latency_p50_ms)),
                Series::points("p90", t.series(|s| s.latency_p90_ms)),
                Series::points("p99", t.series(|s| s.latency_p99_ms)),
            ],
        ),
        (
            "Faults injected (cumulative)",
            "count",
            vec![
                Series::new("messages dropped", count(|s| s.messages_dropped as f64)),
                Series::new(
                    "messages duplicated",
                    count(|s| s.messages_duplicated as f64),
                ),
                Series::new("commits never landed", count(|s| s.commits_lost as f64)),
                Series::new("device restarts", count(|s| s.device_restarts as f64)),
            ],
        ),
    ]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1060px;color:#222}\
h1{font-size:24px;margin:0 0 4px}\
.verdict{font-weight:bold;padding:2px 8px;border-radius:4px}\
.ok{background:#d8f3dc;color:#1b4332}.bad{background:#ffd6d6;color:#7a0000}\
table{border-collapse:collapse;margin:12px 0 20px;font-size:14px;columns:2}\
.summary{display:grid;grid-template-columns:1fr 1fr;column-gap:32px}\
td{padding:3px 10px 3px 0;border-bottom:1px solid #eee}td.v{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:0 0 18px}figcaption{font-size:13px;color:#555}\
p.note{font-size:13px;color:#555}";

/// The report as a self-contained HTML page.
///
/// # Errors
/// When a chart cannot be drawn (a sample that is not finite).
pub fn render_html(report: &Report) -> anyhow::Result<String> {
    let mut rows: Vec<(&str, String)> = vec![
        ("devices", report.devices.to_string()),
        ("expiring", report.expiring.to_string()),
        (
            "jitr (activated/asked)",
            format!("{}/{}", report.jitr_activated, report.jitr),
        ),
        ("rotated", report.rotated.to_string()),
        ("failed", report.failed.to_string()),
        ("bricked", report.bricked.to_string()),
        (
            "orphaned certificates",
            report.orphaned_certificates.to_string(),
        ),
        (
            "converged",
            format!(
                "{} ({} audit cycles)",
                report.converged, report.audit_cycles
            ),
        ),
        ("rollbacks", report.rollbacks.to_string()),
        ("device restarts", report.device_restarts.to_string()),
        (
            "messages dropped/duplicated",
            format!("{}/{}", report.messages_dropped, report.messages_duplicated),
        ),
        ("commits never landed", report.commits_lost.to_string()),
        ("support notifications", report.notifications.to_string()),
        (
            "rotations/s",
            format!(
                "{:.1} ({} in {:.2} s)",
                report.rotations_per_second, report.rotated, report.rotation_seconds
            ),
        ),
        (
            "latency p50/p99",
            format!(
                "{:.0} ms / {:.0} ms",
                report.latency_p50_ms, report.latency_p99_ms
            ),
        ),
        (
            "peak memory (VmHWM)",
            format!("{:.1} MiB", report.peak_memory_bytes as f64 / 1_048_576.0),
        ),
    ];
    if let (Some(bound), Some(ratio)) =
        (report.crypto_bound_per_second, report.ratio_to_crypto_bound)
    {
        rows.push((
            "crypto bound",
            format!("{bound:.1}/s ({:.1}% reached)", ratio * 100.0),
        ));
    }
    let half = rows.len().div_ceil(2);
    let table = |rows: &[(&str, String)]| {
        let body: String = rows
            .iter()
            .map(|(k, v)| {
                format!(
                    "<tr><td>{}</td><td class=\"v\">{}</td></tr>",
                    escape(k),
                    escape(v)
                )
            })
            .collect();
        format!("<table>{body}</table>")
    };
    // one x axis for every chart: the same x is the same moment
    let x_end = report
        .timeline
        .samples
        .last()
        .map_or(1.0, |s| s.t_s)
        .max(1.0);
    let mut figures = String::new();
    for (title, y_label, series) in charts(report) {
        let svg = line_chart(&Chart {
            title,
            x_label: X_LABEL,
            y_label,
            series: &series,
            size: (1040, 330),
            x_range: Some((0.0, x_end)),
        })?;
        figures.push_str(&format!("<figure>{svg}</figure>\n"));
    }
    let (class, verdict) = if report.ok() {
        ("ok", "invariants hold")
    } else {
        ("bad", "invariants broken")
    };
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>fleetcert simulate: {devices} devices</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>fleetcert simulate: {devices} devices</h1>\n\
         <p><span class=\"verdict {class}\">{verdict}</span> bricked {bricked}, orphaned {orphaned}, converged {converged}</p>\n\
         <div class=\"summary\">{left}{right}</div>\n{figures}\
         <p class=\"note\">Sampled every {interval:.2} s ({samples} samples; at most {max} are kept, \
         every other one dropped and the interval doubled when full). Latency percentiles are \
         those of the rotations that ended since the previous sample.</p>\n</body>\n</html>\n",
        devices = report.devices + report.jitr,
        bricked = report.bricked,
        orphaned = report.orphaned_certificates,
        converged = report.converged,
        left = table(&rows[..half]),
        right = table(&rows[half..]),
        interval = report.timeline.interval_s,
        samples = report.timeline.samples.len(),
        max = super::timeline::MAX_SAMPLES,
    ))
}
