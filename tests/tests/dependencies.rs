//! Each workspace crate depends on exactly the workspace crates
//! ARCHITECTURE.md's picture and table allow (`[dependencies]` and
//! `[build-dependencies]`; dev-dependencies are free). Read from
//! `cargo metadata --no-deps`, so a manifest that adds an edge fails here,
//! and so does a table in ARCHITECTURE.md that no longer says what the
//! manifests do.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `(crate, dependency, optional)`: every edge between workspace crates.
const ALLOWED: &[(&str, &str, bool)] = &[
    ("infra", "rules", false),
    ("lambdas", "rules", false),
    ("device", "rules", false),
    ("emulator", "rules", false),
    ("emulator", "lambdas", false),
    ("harness", "rules", false),
    ("harness", "lambdas", false),
    ("harness", "emulator", false),
    ("harness", "device", false),
    ("harness", "infra", false),
    ("harness", "test-support", false),
    ("harness", "plot", false),
    ("cli", "rules", false),
    ("cli", "infra", false),
    ("cli", "harness", true),
    ("planner", "rules", false),
    ("planner", "lambdas", false),
    ("planner", "infra", false),
    ("cli", "planner", true),
    ("tests", "rules", false),
    ("xtask", "rules", false),
];

type Edges = BTreeSet<(String, String, bool)>;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is a workspace member")
}

/// The edges between workspace members, and the members.
fn manifest_edges() -> (Edges, BTreeSet<String>) {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    let mut edges = Edges::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if !members.contains(dep_name) || dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let optional = dep["optional"].as_bool().unwrap_or(false);
            edges.insert((name.to_owned(), dep_name.to_owned(), optional));
        }
    }
    (edges, members)
}

fn allowed() -> Edges {
    ALLOWED
        .iter()
        .map(|&(from, to, optional)| (from.to_owned(), to.to_owned(), optional))
        .collect()
}

/// The backticked names in `cell`.
fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// ARCHITECTURE.md's table of edges: `| crate[, crate] | dep, dep; dep with feature f |`.
fn documented_edges() -> Edges {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md"))
        .expect("read ARCHITECTURE.md");
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("| crate | depends on |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(
        !table.is_empty(),
        "ARCHITECTURE.md has no `| crate | depends on |` table"
    );
    let mut edges = Edges::new();
    for row in table {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 2, "a row of two cells: {row}");
        for from in names(cells[0]) {
            for part in cells[1].split(';') {
                // `harness` with feature `local`: the feature is no crate
                let (deps, optional) = match part.split_once("with feature") {
                    Some((deps, _)) => (deps, true),
                    None => (part, false),
                };
                for to in names(deps) {
                    edges.insert((from.clone(), to, optional));
                }
            }
        }
    }
    edges
}

fn describe(edges: &Edges) -> String {
    edges
        .iter()
        .map(|(from, to, optional)| {
            format!(
                "{from} → {to}{}",
                if *optional { " (optional)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn manifests_have_exactly_the_allowed_edges() {
    let (actual, _) = manifest_edges();
    let allowed = allowed();
    let extra: Edges = actual.difference(&allowed).cloned().collect();
    let missing: Edges = allowed.difference(&actual).cloned().collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "dependencies between workspace crates drifted from ARCHITECTURE.md: \
         not allowed: [{}]; allowed but gone: [{}] \
         (change the manifest, or the picture, its table and this test together)",
        describe(&extra),
        describe(&missing)
    );
}

#[test]
fn architecture_md_shows_the_allowed_edges() {
    let documented = documented_edges();
    assert_eq!(
        describe(&documented),
        describe(&allowed()),
        "ARCHITECTURE.md's table of edges says something else than the allowed edges"
    );
}

#[test]
fn every_member_is_in_the_picture() {
    let (_, members) = manifest_edges();
    let in_table: BTreeSet<String> = allowed()
        .into_iter()
        .flat_map(|(from, to, _)| [from, to])
        .collect();
    let missing: Vec<&String> = members.difference(&in_table).collect();
    assert!(
        missing.is_empty(),
        "workspace members without a row in ARCHITECTURE.md's table: {missing:?}"
    );
}
