//! `cargo xtask wasm`: build `rules` for wasm32 and package it for Node.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Builds `rules` for `wasm32-unknown-unknown` (release) and runs
/// `wasm-bindgen --target nodejs` into `rules/pkg/`, with a `package.json`.
pub fn build(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(&cargo).current_dir(root).args([
        "build",
        "--package",
        "rules",
        "--lib",
        "--release",
        "--locked",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let wasm = target_dir.join("wasm32-unknown-unknown/release/rules.wasm");
    let out = root.join("rules/pkg");
    run(Command::new("wasm-bindgen")
        .arg("--target")
        .arg("nodejs")
        .arg("--out-dir")
        .arg(&out)
        .arg(&wasm))
    .context("wasm-bindgen failed (is wasm-bindgen-cli installed at the Cargo.lock version? ./scripts/test.sh installs it)")?;

    let manifest = serde_json::json!({
        "name": "@fleetcert/rules",
        "version": "0.0.0",
        "private": true,
        "description": "fleetcert's protocol core in WebAssembly: contracts, topic matching, IoT SQL, IoT policies, CSR inspection",
        "main": "rules.js",
        "types": "rules.d.ts",
        "files": ["rules.js", "rules.d.ts", "rules_bg.wasm", "rules_bg.wasm.d.ts"]
    });
    std::fs::write(
        out.join("package.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )
    .context("writing rules/pkg/package.json")?;
    let size = std::fs::metadata(out.join("rules_bg.wasm"))?.len();
    println!("rules/pkg: rules_bg.wasm is {} KiB", size / 1024);
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}
