//! `fleetcert simulate --html`: a small faulted fleet, then the page read
//! back as a user would check it: self-contained, four charts with their
//! titles and axes, each series drawn with one point per sample of the
//! report's timeline (`--json`), the last ones agreeing with the report.

use std::process::Command;

use serde_json::Value;

const TITLES: [&str; 4] = [
    "Rotations over time",
    "Open rotations over time",
    "Rotation latency (csr_req to crt_ack)",
    "Faults injected (cumulative)",
];

/// The `<svg>…</svg>` documents of the page.
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("a closed <svg>") + start + "</svg>".len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

fn texts<'a>(doc: &'a roxmltree::Document<'_>) -> Vec<&'a str> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect()
}

/// Point counts of the polylines and filled circles of series `i`'s colour.
fn marks(doc: &roxmltree::Document<'_>, i: usize) -> (Vec<usize>, usize) {
    let hex = plot::colour_hex(i);
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(hex.as_str()))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect();
    let dots = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some(hex.as_str()))
        .count();
    (lines, dots)
}

#[test]
fn simulate_html_draws_the_runs_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let html_path = dir.path().join("report.html");
    let json_path = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetcert"))
        .args([
            "simulate",
            "--devices",
            "16",
            "--faults",
            "--quiet",
            "--crypto-bound-secs",
            "0",
            "--agents-process",
            "in",
            "--timeout-secs",
            "180",
        ])
        .arg("--html")
        .arg(&html_path)
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("run fleetcert simulate");
    assert!(
        out.status.success(),
        "simulate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).expect("the page");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("the json")).expect("json");
    let samples = report["timeline"]["samples"].as_array().expect("samples");
    let n = samples.len();
    assert!(
        (3..=256).contains(&n),
        "{n} samples for a run of {} s",
        report["rotation_seconds"]
    );
    let last = &samples[n - 1];
    assert_eq!(
        last["rotated"], report["rotated"],
        "the last sample is the end"
    );
    assert_eq!(last["commits_lost"], report["commits_lost"]);

    // self-contained: nothing fetched, nothing run
    assert!(html.starts_with("<!DOCTYPE html>"));
    for fetch in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(fetch),
            "the page fetches or runs something: {fetch}"
        );
    }
    assert!(html.contains("invariants hold"));

    let svgs = svgs(&html);
    assert_eq!(svgs.len(), 4, "four charts");
    let docs: Vec<roxmltree::Document<'_>> = svgs
        .iter()
        .map(|s| roxmltree::Document::parse(s).expect("well-formed SVG"))
        .collect();
    for (doc, title) in docs.iter().zip(TITLES) {
        let t = texts(doc);
        assert!(t.contains(&title), "no title {title:?}: {t:?}");
        assert!(
            t.contains(&"seconds since the first audit"),
            "{title}: no x axis"
        );
    }
    // rotations, open rotations, faults: lines of one point per sample
    let lines = |doc: &roxmltree::Document<'_>, names: &[&str], y: &str| {
        let t = texts(doc);
        assert!(t.contains(&y), "no y axis {y:?}");
        for (i, name) in names.iter().enumerate() {
            assert!(t.contains(name), "no legend {name:?}");
            let (polylines, _) = marks(doc, i);
            assert_eq!(
                polylines,
                vec![n, 2],
                "{name}: the line and its legend mark"
            );
        }
    };
    lines(&docs[0], &["devices rotated"], "devices");
    lines(
        &docs[1],
        &["open (or owing a cleanup)", "waiting in the queue"],
        "rotations",
    );
    lines(
        &docs[3],
        &[
            "messages dropped",
            "messages duplicated",
            "commits never landed",
            "device restarts",
        ],
        "count",
    );
    // latency: a dot per sample in which rotations ended
    let t = texts(&docs[2]);
    assert!(t.contains(&"milliseconds"));
    for (i, key) in ["latency_p50_ms", "latency_p90_ms", "latency_p99_ms"]
        .into_iter()
        .enumerate()
    {
        let measured = samples.iter().filter(|s| s[key].is_number()).count();
        assert!(measured >= 1, "no sample has {key}");
        let (_, dots) = marks(&docs[2], i);
        assert_eq!(
            dots,
            measured + 1,
            "{key}: a dot per measured sample and the legend's"
        );
    }
    // the faults the report counts are drawn
    let faults = report["commits_lost"].as_u64().unwrap_or(0);
    assert!(faults > 0, "--faults lost no commit: {report}");
}
