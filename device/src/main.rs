//! `fleetcert-device`: the device agent as a command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use device::{Agent, AgentConfig, AgentEvent, Backoff, Slots};
use rules::contracts::{ClientId, KeyAlgorithm};

#[derive(Debug, Parser)]
#[command(name = "fleetcert-device", about = "fleetcert device agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Key {
    EcP256,
    EcP384,
    Rsa2048,
    Rsa3072,
}

impl From<Key> for KeyAlgorithm {
    fn from(k: Key) -> Self {
        match k {
            Key::EcP256 => KeyAlgorithm::EcP256,
            Key::EcP384 => KeyAlgorithm::EcP384,
            Key::Rsa2048 => KeyAlgorithm::Rsa2048,
            Key::Rsa3072 => KeyAlgorithm::Rsa3072,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Installs a certificate and key as the current slot.
    Install {
        /// The state directory.
        #[arg(long)]
        state_dir: PathBuf,
        /// Certificate PEM file.
        #[arg(long)]
        cert: PathBuf,
        /// Private key PEM file (PKCS#8).
        #[arg(long)]
        key: PathBuf,
    },
    /// Writes a new key and a CSR (CN = thing) for first provisioning.
    Csr {
        /// The thing name.
        #[arg(long)]
        thing: String,
        /// Key algorithm.
        #[arg(long, value_enum, default_value = "ec-p256")]
        key_algorithm: Key,
        /// Where to write the key (mode 0600).
        #[arg(long)]
        key_out: PathBuf,
        /// Where to write the CSR.
        #[arg(long)]
        csr_out: PathBuf,
    },
    /// Shows the slots.
    Status {
        /// The state directory.
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Runs the agent until interrupted.
    Run {
        /// The thing name (MQTT client id).
        #[arg(long)]
        thing: String,
        /// Broker host.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Broker port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// PEM file of the CA(s) that sign the broker's certificate.
        #[arg(long)]
        server_ca: PathBuf,
        /// The state directory.
        #[arg(long)]
        state_dir: PathBuf,
        /// Key generated when csr_req names none.
        #[arg(long, value_enum, default_value = "ec-p256")]
        key_algorithm: Key,
        /// Connection attempts before giving up.
        #[arg(long, default_value_t = 10)]
        max_attempts: u32,
        /// Seconds after which connecting gives up.
        #[arg(long, default_value_t = 300)]
        max_connect_secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Install {
            state_dir,
            cert,
            key,
        } => {
            let cert = std::fs::read_to_string(&cert)
                .with_context(|| format!("read {}", cert.display()))?;
            let key =
                std::fs::read_to_string(&key).with_context(|| format!("read {}", key.display()))?;
            Slots::open(&state_dir)?.install(&cert, &key, None)?;
            println!("installed into {}", state_dir.display());
        }
        Command::Csr {
            thing,
            key_algorithm,
            key_out,
            csr_out,
        } => {
            ClientId::new(thing.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = device::keys::generate_key(key_algorithm.into())?;
            let csr = device::keys::csr_pem(&thing, &key)?;
            write_private(&key_out, key.serialize_pem().as_bytes())?;
            std::fs::write(&csr_out, csr)
                .with_context(|| format!("write {}", csr_out.display()))?;
        }
        Command::Status { state_dir } => {
            let state = Slots::open(&state_dir)?.load()?;
            for (name, slot) in [("current", &state.current), ("next", &state.next)] {
                match slot {
                    Some(s) => println!(
                        "{name}: certificate {} rotation {} key {}",
                        s.meta.certificate_id.as_deref().unwrap_or("(none yet)"),
                        s.meta.rotation_id.as_ref().map_or("-", |r| r.as_str()),
                        s.meta.key_algorithm.map_or("?", |k| k.as_str()),
                    ),
                    None => println!("{name}: empty"),
                }
            }
        }
        Command::Run {
            thing,
            host,
            port,
            server_ca,
            state_dir,
            key_algorithm,
            max_attempts,
            max_connect_secs,
        } => {
            let thing = ClientId::new(thing).map_err(|e| anyhow::anyhow!("{e}"))?;
            let ca = std::fs::read_to_string(&server_ca)
                .with_context(|| format!("read {}", server_ca.display()))?;
            let mut config = AgentConfig::new(thing, host, port, ca, state_dir);
            config.key_algorithm = key_algorithm.into();
            config.backoff = Backoff {
                max_attempts,
                max_total: Duration::from_secs(max_connect_secs),
                ..Backoff::default()
            };
            let agent = Agent::new(config)?.with_events(Arc::new(|event: AgentEvent| {
                tracing::info!(?event, "agent");
            }));
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            if let Err(e) = agent.run(shutdown).await {
                bail!("agent stopped: {e}");
            }
        }
    }
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))
}
