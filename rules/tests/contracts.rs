//! Contract tests: every sample under `tests/samples/<contract>/{valid,invalid}`
//! gets the verdict its folder says from `rules::contracts::validate` **and**
//! from the committed JSON Schema (checked with the independent `jsonschema`
//! validator), and the committed schemas are what `cargo xtask codegen`
//! would write.

use std::fs;
use std::path::{Path, PathBuf};

use rules::contracts::{Contract, MAX_PAYLOAD_KEYWORD, validate};
use serde_json::Value;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schemas_dir() -> PathBuf {
    manifest_dir().join("../schemas")
}

fn samples_dir() -> PathBuf {
    manifest_dir().join("tests/samples")
}

/// The committed schema of `contract`, compiled.
fn committed_validator(contract: Contract) -> (jsonschema::Validator, usize) {
    let path = schemas_dir().join(contract.schema_file_name());
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask codegen`", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let max = schema[MAX_PAYLOAD_KEYWORD]
        .as_u64()
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or_else(|| panic!("{} has no {MAX_PAYLOAD_KEYWORD}", path.display()));
    let validator =
        jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (validator, max)
}

/// The schema's verdict on a payload: the size keyword, then JSON, then the
/// schema itself.
fn schema_accepts(validator: &jsonschema::Validator, max: usize, payload: &[u8]) -> bool {
    payload.len() <= max
        && serde_json::from_slice::<Value>(payload).is_ok_and(|v| validator.is_valid(&v))
}

fn sample_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable samples folder").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn samples_get_the_same_verdict_from_serde_and_schema() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for &contract in Contract::ALL {
        let (validator, max) = committed_validator(contract);
        for (folder, expected) in [("valid", true), ("invalid", false)] {
            let files = sample_files(&samples_dir().join(contract.name()).join(folder));
            assert!(
                !files.is_empty(),
                "no {folder} samples for `{contract}` in tests/samples/{contract}/{folder}"
            );
            for file in files {
                let payload = fs::read(&file).expect("readable sample");
                let by_serde = validate(contract, &payload);
                let by_schema = schema_accepts(&validator, max, &payload);
                let name = file
                    .strip_prefix(samples_dir())
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                if by_serde.is_ok() != expected {
                    failures.push(format!("{name}: validate says {by_serde:?}"));
                }
                if by_schema != expected {
                    failures.push(format!("{name}: schema says valid = {by_schema}"));
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} samples disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_sample_folder_names_a_contract() {
    for entry in fs::read_dir(samples_dir()).expect("tests/samples exists") {
        let name = entry
            .expect("readable")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            Contract::from_name(&name).is_ok(),
            "tests/samples/{name} is not a contract name"
        );
    }
}

/// Mutations of every valid sample (each field removed, set to each JSON
/// type, an unknown field added, the whole payload replaced by each JSON
/// type) must get the same verdict from serde and from the schema.
#[test]
fn serde_and_schema_agree_on_mutated_samples() {
    let replacements = [
        Value::Null,
        Value::Bool(true),
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1.5),
        serde_json::json!(2.0),
        serde_json::json!(""),
        serde_json::json!("x"),
        serde_json::json!([]),
        serde_json::json!({}),
    ];
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for &contract in Contract::ALL {
        let (validator, max) = committed_validator(contract);
        for file in sample_files(&samples_dir().join(contract.name()).join("valid")) {
            let original: Value =
                serde_json::from_slice(&fs::read(&file).expect("readable")).expect("json sample");
            let mut variants: Vec<(String, Value)> = replacements
                .iter()
                .map(|r| ("whole payload".to_owned(), r.clone()))
                .collect();
            mutate(&original, "", &replacements, &mut variants);
            for (what, variant) in variants {
                let payload = serde_json::to_vec(&variant).expect("serializable");
                let by_serde = validate(contract, &payload);
                let by_schema = schema_accepts(&validator, max, &payload);
                checked += 1;
                if by_serde.is_ok() != by_schema {
                    disagreements.push(format!(
                        "{}: {what}: validate = {by_serde:?}, schema valid = {by_schema}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} mutations checked");
    assert!(
        disagreements.is_empty(),
        "serde and schema disagree:\n{}",
        disagreements.join("\n")
    );
}

/// Pushes every one-step mutation of `value` (at JSON pointer `at`),
/// recursing into objects and arrays.
fn mutate(value: &Value, at: &str, replacements: &[Value], out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            let mut extra = map.clone();
            extra.insert("unknownField".to_owned(), Value::from(1));
            out.push((format!("{at}/unknownField added"), Value::Object(extra)));
            for (key, child) in map {
                let mut removed = map.clone();
                removed.remove(key);
                out.push((format!("{at}/{key} removed"), Value::Object(removed)));
                for r in replacements {
                    let mut replaced = map.clone();
                    replaced.insert(key.clone(), r.clone());
                    out.push((format!("{at}/{key} = {r}"), Value::Object(replaced)));
                }
                let mut nested = Vec::new();
                mutate(child, &format!("{at}/{key}"), replacements, &mut nested);
                for (what, v) in nested {
                    let mut replaced = map.clone();
                    replaced.insert(key.clone(), v);
                    out.push((what, Value::Object(replaced)));
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mut nested = Vec::new();
                mutate(child, &format!("{at}/{i}"), replacements, &mut nested);
                for (what, v) in nested {
                    let mut replaced = items.clone();
                    replaced[i] = v;
                    out.push((what, Value::Array(replaced)));
                }
            }
            if !items.is_empty() {
                out.push((format!("{at} emptied"), Value::Array(Vec::new())));
            }
        }
        _ => {}
    }
}

/// rust-analyzer's `ensure_file_contents`: the committed schemas are what
/// the contracts generate today.
#[test]
fn committed_schemas_are_fresh() {
    let mut stale = Vec::new();
    for &contract in Contract::ALL {
        let path = schemas_dir().join(contract.schema_file_name());
        let want = contract.schema_file_contents();
        if fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(format!("schemas/{}", contract.schema_file_name()));
        }
    }
    for entry in fs::read_dir(schemas_dir()).expect("schemas/ exists") {
        let name = entry
            .expect("readable")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".schema.json")
            && !Contract::ALL.iter().any(|c| c.schema_file_name() == name)
        {
            stale.push(format!("schemas/{name} (no contract generates it)"));
        }
    }
    assert!(
        stale.is_empty(),
        "generated schemas are out of date, run `cargo xtask codegen` and commit the result:\n{}",
        stale.join("\n")
    );
}

#[test]
fn committed_schemas_are_valid_draft_2020_12() {
    for &contract in Contract::ALL {
        let path = schemas_dir().join(contract.schema_file_name());
        let schema: Value =
            serde_json::from_str(&fs::read_to_string(&path).expect("committed")).expect("json");
        assert!(
            jsonschema::meta::is_valid(&schema),
            "{} is not a valid JSON Schema",
            path.display()
        );
    }
}

/// Each ```json example in schemas/README.md is valid for the last contract
/// named in backticks before it.
#[test]
fn readme_examples_are_valid() {
    let readme = fs::read_to_string(schemas_dir().join("README.md")).expect("schemas/README.md");
    let mut checked = 0;
    let mut rest = readme.as_str();
    let mut before = String::new();
    while let Some(start) = rest.find("```json\n") {
        before.push_str(&rest[..start]);
        let body_start = start + "```json\n".len();
        let Some(len) = rest[body_start..].find("```") else {
            panic!("unterminated code block")
        };
        let example = &rest[body_start..body_start + len];
        let contract = before
            .rsplit('`')
            .find_map(|word| Contract::from_name(word).ok())
            .unwrap_or_else(|| panic!("no contract named before example {example}"));
        if let Err(e) = validate(contract, example.as_bytes()) {
            panic!("README example for `{contract}` is invalid: {e}\n{example}");
        }
        checked += 1;
        rest = &rest[body_start + len + 3..];
    }
    assert_eq!(checked, 6, "examples checked");
}
