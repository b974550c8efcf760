//! The cloud assembly the stock CDK CLI reads: `manifest.json`, the
//! template, and a `cdk:asset-manifest` for the Lambda zips (what
//! aws-cdk-lib's default synthesizer writes).

use std::path::{Path, PathBuf};

use rules::functions::Function as Fn_;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError, Validated};
use crate::fleetcert::{self, LambdaAsset, QUALIFIER};
use crate::stack::SynthError;

/// The cloud assembly schema version written; CDK CLI 2.1148.1 accepts up
/// to its bundled major.
pub const SCHEMA_VERSION: &str = "55.0.0";

/// Why the assembly could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssemblyError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The stack is inconsistent (dangling reference, …).
    #[error("synthesis failed: {0}")]
    Synth(#[from] SynthError),
    /// A file system error.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What [`synth`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthesized {
    /// The assembly directory.
    pub out_dir: PathBuf,
    /// Functions whose zip is missing (`cargo xtask lambdas` builds them).
    pub missing_assets: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AssemblyError + '_ {
    move |source| AssemblyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Hashes the Lambda zips in `asset_dir/<function>/bootstrap.zip`.
pub fn lambda_assets(asset_dir: &Path) -> Vec<(LambdaAsset, PathBuf)> {
    Fn_::ALL
        .iter()
        .map(|&f| {
            let path = asset_dir.join(f.name()).join("bootstrap.zip");
            match std::fs::read(&path) {
                Ok(bytes) => (
                    LambdaAsset {
                        function: f,
                        hash: hex::encode(Sha256::digest(&bytes)),
                        present: true,
                    },
                    path,
                ),
                Err(_) => (unbuilt_asset(f), path),
            }
        })
        .collect()
}

/// Every function's asset as [`lambda_assets`] gives it when no zip is
/// built (`cargo xtask lambdas` has not run), without reading a directory:
/// what the in-memory synthesis of the emulator, the harness and the tests
/// uses.
pub fn unbuilt_assets() -> Vec<LambdaAsset> {
    Fn_::ALL.iter().map(|&f| unbuilt_asset(f)).collect()
}

/// The template `fleetcert synth` writes for the default configuration
/// with the JITR rule for `jitr_ca_ids`, synthesized in memory with
/// [`unbuilt_assets`]: what the emulator's tests and the harness run on.
///
/// # Errors
/// When the configuration does not validate or the stack does not
/// synthesize.
pub fn default_template(jitr_ca_ids: &[String]) -> Result<Json, AssemblyError> {
    let mut config = Config::default();
    config.jitr.ca_certificate_ids = jitr_ca_ids.to_vec();
    Ok(template(&config.validate()?, &unbuilt_assets())?)
}

fn unbuilt_asset(function: Fn_) -> LambdaAsset {
    LambdaAsset {
        function,
        hash: hex::encode(Sha256::digest(format!("missing:{}", function.name()))),
        present: false,
    }
}

/// The template of the configured stack.
pub fn template(v: &Validated, assets: &[LambdaAsset]) -> Result<Json, SynthError> {
    fleetcert::build(v, assets).template()
}

/// Synthesizes into `out_dir`: everything is built in memory first, written
/// to a sibling temporary directory, then renamed into place; on any error
/// `out_dir` is left as it was.
pub fn synth(
    v: &Validated,
    asset_dir: &Path,
    out_dir: &Path,
) -> Result<Synthesized, AssemblyError> {
    let assets = lambda_assets(asset_dir);
    let plain: Vec<LambdaAsset> = assets.iter().map(|(a, _)| a.clone()).collect();
    let template = template(v, &plain)?;
    let stack = v.config.stack_name.as_str();
    // compact: CloudFormation takes templates under 51,200 bytes inline
    let template_text = serde_json::to_string(&template).unwrap_or_default();
    let template_hash = hex::encode(Sha256::digest(template_text.as_bytes()));
    let env = match &v.config.region {
        Some(r) => format!("aws://unknown-account/{r}"),
        None => "aws://unknown-account/unknown-region".to_owned(),
    };
    let role = |name: &str| {
        format!(
            "arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/cdk-{QUALIFIER}-{name}-${{AWS::AccountId}}-${{AWS::Region}}"
        )
    };
    let bucket = format!("cdk-{QUALIFIER}-assets-${{AWS::AccountId}}-${{AWS::Region}}");
    let destination = |key: String| {
        json!({ "current_account-current_region": {
            "bucketName": bucket,
            "objectKey": key,
            "assumeRoleArn": role("file-publishing-role"),
        }})
    };
    let mut files = serde_json::Map::new();
    for (a, path) in &assets {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        files.insert(
            a.hash.clone(),
            json!({
                "displayName": format!("{} Code", a.function.name()),
                "source": { "path": abs.display().to_string(), "packaging": "file" },
                "destinations": destination(format!("{}.zip", a.hash)),
            }),
        );
    }
    // The template itself is passed inline (it is compact and well under
    // CloudFormation's 51,200-byte TemplateBody limit), so it is no asset:
    // a `stackTemplateAssetObjectUrl` makes the CLI pass a TemplateURL, which
    // local AWS stand-ins such as moto do not resolve.
    let _ = &template_hash;
    let asset_manifest = json!({ "version": SCHEMA_VERSION, "files": files, "dockerImages": {} });
    let assets_id = format!("{stack}.assets");
    let bootstrap_param = format!("/cdk-bootstrap/{QUALIFIER}/version");
    let manifest = json!({
        "version": SCHEMA_VERSION,
        "artifacts": {
            assets_id.clone(): {
                "type": "cdk:asset-manifest",
                "properties": {
                    "file": format!("{assets_id}.json"),
                    "requiresBootstrapStackVersion": 6,
                    "bootstrapStackVersionSsmParameter": bootstrap_param,
                }
            },
            stack: {
                "type": "aws:cloudformation:stack",
                "environment": env,
                "properties": {
                    "templateFile": format!("{stack}.template.json"),
                    "terminationProtection": false,
                    "validateOnSynth": false,
                    "assumeRoleArn": role("deploy-role"),
                    "cloudFormationExecutionRoleArn": role("cfn-exec-role"),
                    "requiresBootstrapStackVersion": 6,
                    "bootstrapStackVersionSsmParameter": bootstrap_param,
                    "additionalDependencies": [assets_id.clone()],
                    "lookupRole": {
                        "arn": role("lookup-role"),
                        "requiresBootstrapStackVersion": 8,
                        "bootstrapStackVersionSsmParameter": bootstrap_param,
                    }
                },
                "dependencies": [assets_id],
                "displayName": stack,
            }
        }
    });
    let out_files = [
        ("manifest.json".to_owned(), pretty(&manifest)),
        (format!("{stack}.assets.json"), pretty(&asset_manifest)),
        (format!("{stack}.template.json"), template_text),
        (
            "cdk.out".to_owned(),
            pretty(&json!({ "version": SCHEMA_VERSION })),
        ),
    ];
    write_atomically(out_dir, &out_files)?;
    Ok(Synthesized {
        out_dir: out_dir.to_path_buf(),
        missing_assets: assets
            .into_iter()
            .filter(|(a, _)| !a.present)
            .map(|(_, p)| p)
            .collect(),
    })
}

fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Writes the files into a temporary sibling of `out_dir`, then swaps it in.
/// When `out_dir` exists and holds other files (the CDK CLI's locks), the
/// new files are renamed into it one by one instead.
fn write_atomically(out_dir: &Path, files: &[(String, String)]) -> Result<(), AssemblyError> {
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cdk.out".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for (file, text) in files {
        let p = tmp.join(file);
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    if std::env::var_os("CDK_OUTDIR").is_some() && out_dir.is_dir() {
        // the CLI owns the directory (and its lock files): move files in
        for (file, _) in files {
            let to = out_dir.join(file);
            std::fs::rename(tmp.join(file), &to).map_err(io(&to))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if out_dir.exists() {
        std::fs::rename(out_dir, &old).map_err(io(out_dir))?;
    }
    std::fs::rename(&tmp, out_dir).map_err(io(out_dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
