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

    optimize(root, &out.join("rules_bg.wasm"))?;

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

/// binaryen's `wasm-opt`, as `./scripts/test.sh` installs it (npm package
/// `binaryen`, into `.tools/binaryen/`), or `FLEETCERT_WASM_OPT`.
fn wasm_opt(root: &Path) -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("FLEETCERT_WASM_OPT") {
        return Some(path.into());
    }
    let installed = root.join(".tools/binaryen/node_modules/.bin/wasm-opt");
    installed.is_file().then_some(installed)
}

/// `wasm-opt -O3` over the module wasm-bindgen wrote, in place. The
/// features are the ones rustc enables by default for
/// `wasm32-unknown-unknown` (all supported by Node 20); naming them keeps
/// `wasm-opt` from rejecting or widening the module.
fn optimize(root: &Path, wasm: &Path) -> Result<()> {
    let Some(wasm_opt) = wasm_opt(root) else {
        println!(
            "rules/pkg: wasm-opt not found (./scripts/test.sh installs it into .tools/binaryen): \
             the module is left as rustc and wasm-bindgen wrote it"
        );
        return Ok(());
    };
    let before = std::fs::metadata(wasm)?.len();
    run(Command::new(&wasm_opt)
        .arg("-O3")
        .args([
            "--enable-mutable-globals",
            "--enable-sign-ext",
            "--enable-nontrapping-float-to-int",
            "--enable-bulk-memory",
            "--enable-reference-types",
            "--enable-multivalue",
        ])
        .arg(wasm)
        .arg("-o")
        .arg(wasm))
    .with_context(|| format!("{} -O3 failed", wasm_opt.display()))?;
    let after = std::fs::metadata(wasm)?.len();
    println!(
        "rules/pkg: wasm-opt -O3: {} KiB -> {} KiB",
        before / 1024,
        after / 1024
    );
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}
