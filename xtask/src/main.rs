//! `cargo xtask`: codegen, wasm build, Lambda packaging.
//!
//! This branch carries only the CloudFormation half of `codegen`; the JSON
//! Schema half lands from its own branch (the lead merges the dispatchers).

mod cfn;

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => {
            let check = match args.get(1).map(String::as_str) {
                None => false,
                Some("--check") => true,
                Some(other) => bail!("unknown codegen flag {other}, expected --check"),
            };
            cfn::codegen(check)
        }
        Some(other) => bail!("unknown task {other}, expected: codegen [--check]"),
        None => bail!("usage: cargo xtask codegen [--check]"),
    }
}
