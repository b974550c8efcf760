//! Prints, as one JSON object, the envelope `rules::js::validate` returns
//! for every sample under `rules/tests/samples/<contract>/{valid,invalid}`,
//! keyed by the sample's path relative to `rules/tests/samples`.
//!
//! `rules/wasm-tests/samples.test.mjs` runs this and checks that the wasm
//! build gives every sample the same envelope (verdict, error kind, path
//! and message) as native code.
//!
//! `cargo run -q -p rules --example sample_envelopes`

use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples");
    let mut out = Map::new();
    let mut contracts: Vec<_> = fs::read_dir(&samples)?.collect::<Result<_, _>>()?;
    contracts.sort_by_key(fs::DirEntry::file_name);
    for contract in contracts {
        let name = contract.file_name().to_string_lossy().into_owned();
        for folder in ["valid", "invalid"] {
            let Ok(entries) = fs::read_dir(contract.path().join(folder)) else {
                continue;
            };
            let mut files: Vec<_> = entries.collect::<Result<_, _>>()?;
            files.sort_by_key(fs::DirEntry::file_name);
            for file in files {
                let bytes = fs::read(file.path())?;
                // Node hands wasm a JS string: lossy UTF-8 is what it sees too.
                let payload = String::from_utf8_lossy(&bytes);
                let key = format!("{name}/{folder}/{}", file.file_name().to_string_lossy());
                out.insert(key, rules::js::validate(&name, &payload));
            }
        }
    }
    println!("{}", Value::Object(out));
    Ok(())
}
