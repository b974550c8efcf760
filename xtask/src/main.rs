//! `cargo xtask`: codegen, wasm build, Lambda packaging.

fn main() -> anyhow::Result<()> {
    Ok(())
}
