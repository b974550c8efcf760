//! The `fleetcert` binary.

use clap::Parser;

/// Keep a fleet of AWS IoT devices on valid X.509 certificates.
#[derive(Debug, Parser)]
#[command(name = "fleetcert", version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("synthesis is not implemented yet (see the infra issue)")
}
