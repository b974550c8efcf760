//! `schemas/*.schema.json`: one JSON Schema per `rules::contracts::Contract`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rules::contracts::Contract;

use crate::Mode;

/// The folder of the generated schemas, relative to the workspace root.
const SCHEMAS_DIR: &str = "schemas";

/// Brings `schemas/` in line with the contracts: writes each contract's
/// schema that differs and deletes `*.schema.json` files no contract
/// generates (in [`Mode::Check`], only lists them). Returns the paths that
/// were (or would be) changed.
pub fn codegen(root: &Path, mode: Mode) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root.join(SCHEMAS_DIR);
    if mode == Mode::Write {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut changed = Vec::new();
    let mut expected = BTreeSet::new();
    for contract in Contract::ALL {
        let name = contract.schema_file_name();
        let path = dir.join(&name);
        expected.insert(name);
        let want = contract.schema_file_contents();
        let have = fs::read_to_string(&path).ok();
        if have.as_deref() != Some(want.as_str()) {
            if mode == Mode::Write {
                fs::write(&path, want).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            changed.push(path);
        }
    }
    if dir.is_dir() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".schema.json") && !expected.contains(&name) {
                let path = entry.path();
                if mode == Mode::Write {
                    fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    println!("removed {}", path.display());
                }
                changed.push(path);
            }
        }
    }
    Ok(changed)
}
