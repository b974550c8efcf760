//! The committed `infra/src/generated/` is what `cargo xtask codegen`
//! produces from `infra/cfn-schemas/` (rust-analyzer's
//! `ensure_file_contents`): regenerates into memory and compares.

#[allow(dead_code)]
#[path = "../../xtask/src/cfn.rs"]
mod cfn;

#[test]
fn generated_cloudformation_types_are_fresh() {
    let root = cfn::workspace_root();
    let files = match cfn::generate(&root.join("infra/cfn-schemas")) {
        Ok(files) => files,
        Err(e) => panic!("codegen failed: {e:#}"),
    };
    let mut stale = Vec::new();
    for (name, text) in &files {
        let path = root.join("infra/src/generated").join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != *text {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated CloudFormation types are out of date, run `cargo xtask codegen`: {}",
        stale.join(", ")
    );
}

#[test]
fn every_generated_file_starts_with_the_header() {
    let root = cfn::workspace_root();
    let files = cfn::generate(&root.join("infra/cfn-schemas")).unwrap_or_default();
    assert_eq!(files.len(), 18, "17 resource types and mod.rs");
    for (name, text) in files {
        assert!(
            text.starts_with(&format!("//! {}", cfn::HEADER)),
            "{name} does not start with the generated-file header"
        );
    }
}
