//! The command line of `fleetcert ca`: its arguments (clap).

use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::pki::KeyAlgorithm;

/// Manage the CA that signs device certificates for just-in-time registration.
///
/// Exit codes: 0 ok, 1 failure, 2 usage error, 3 partial failure (some
/// certificates changed, the report says which).
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 ok, 1 failure, 2 usage error, 3 partial failure")]
pub struct CaArgs {
    #[command(flatten)]
    pub(super) global: GlobalArgs,
    #[command(subcommand)]
    pub(super) command: CaCommand,
}

#[derive(Debug, Args, Clone)]
pub(super) struct GlobalArgs {
    /// AWS IoT endpoint to call instead of AWS's (e.g. http://127.0.0.1:5000
    /// for a local AWS API). Default: AWS_ENDPOINT_URL, else AWS.
    #[arg(long, global = true, value_name = "URL")]
    pub(super) endpoint_url: Option<String>,
    /// AWS region. Default: AWS_REGION, else the profile's region.
    #[arg(long, global = true)]
    pub(super) region: Option<String>,
    /// AWS profile to take credentials and region from.
    #[arg(long, global = true)]
    pub(super) profile: Option<String>,
    /// Attempts per AWS call (standard retry with back-off on throttling and 5xx).
    #[arg(long, global = true, default_value_t = 3, value_name = "N")]
    pub(super) max_attempts: u32,
    /// Print JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum CaCommand {
    /// Create a CA key and certificate: self-signed, or an intermediate with --issuer-cert/--issuer-key.
    Create(CreateArgs),
    /// Register a CA with AWS IoT (builds the verification certificate from the registration code); prints the CA certificate id.
    Register(RegisterArgs),
    /// Set a registered CA ACTIVE: devices with certificates it signed may register.
    Activate(CaIdArg),
    /// Set a registered CA INACTIVE: no new device certificate it signed registers.
    Deactivate(CaIdArg),
    /// Turn auto-registration (JITR) of a CA's device certificates on or off.
    AutoRegistration {
        #[arg(value_enum)]
        state: OnOff,
        /// CA certificate id.
        ca_id: String,
    },
    /// List the account's CA certificates (every page).
    List(PageArgs),
    /// Show a registered CA.
    Describe {
        /// CA certificate id.
        ca_id: String,
        /// Print the CA certificate PEM too.
        #[arg(long)]
        pem: bool,
    },
    /// Issue a device key and certificate signed by the CA, with the chain file the device presents.
    IssueDevice(IssueArgs),
    /// List the certificates registered under a CA (every page).
    Certificates {
        /// CA certificate id.
        ca_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke certificates by id, or every certificate registered under a CA.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(super) struct CaIdArg {
    /// CA certificate id.
    pub(super) ca_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub(super) struct PageArgs {
    /// Items per page asked of AWS (1-250).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=250))]
    pub(super) page_size: Option<i32>,
}

#[derive(Debug, Args)]
pub(super) struct CreateArgs {
    /// Directory for <name>.crt.pem and <name>.key.pem (the key with mode 0600).
    #[arg(long, default_value = ".")]
    pub(super) out_dir: PathBuf,
    /// File name stem.
    #[arg(long, default_value = "ca")]
    pub(super) name: String,
    /// Subject common name.
    #[arg(long, default_value = "fleetcert JITR CA")]
    pub(super) common_name: String,
    /// Subject organization.
    #[arg(long)]
    pub(super) organization: Option<String>,
    /// Validity in days (an intermediate never outlives its issuer).
    #[arg(long, default_value_t = 3650)]
    pub(super) days: u32,
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::EcdsaP256)]
    pub(super) key_algorithm: KeyAlgorithm,
    /// Issuer CA certificate: makes an intermediate CA signed by it.
    #[arg(long, requires = "issuer_key")]
    pub(super) issuer_cert: Option<PathBuf>,
    /// Issuer CA private key.
    #[arg(long, requires = "issuer_cert")]
    pub(super) issuer_key: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(Debug, Args)]
pub(super) struct RegisterArgs {
    /// CA certificate (PEM).
    #[arg(long)]
    pub(super) ca_cert: PathBuf,
    /// CA private key (PEM), to sign the verification certificate.
    #[arg(long)]
    pub(super) ca_key: PathBuf,
    /// Register the CA ACTIVE (default: INACTIVE).
    #[arg(long)]
    pub(super) activate: bool,
    /// Turn auto-registration (JITR) on.
    #[arg(long)]
    pub(super) auto_registration: bool,
    /// Also write the verification certificate here (for inspection).
    #[arg(long)]
    pub(super) verification_cert_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct IssueArgs {
    /// CA certificate (PEM).
    #[arg(long)]
    pub(super) ca_cert: PathBuf,
    /// CA private key (PEM).
    #[arg(long)]
    pub(super) ca_key: PathBuf,
    /// Device name: the subject common name and the file name stem (the thing name, usually).
    #[arg(long)]
    pub(super) name: String,
    /// Directory for <name>.crt.pem, <name>.chain.pem and <name>.key.pem (mode 0600).
    #[arg(long, default_value = ".")]
    pub(super) out_dir: PathBuf,
    /// Validity in days (cut to the CA's own).
    #[arg(long, default_value_t = 365)]
    pub(super) days: u32,
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::EcdsaP256)]
    pub(super) key_algorithm: KeyAlgorithm,
    /// Overwrite existing files.
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(Debug, Args)]
pub(super) struct RevokeArgs {
    /// Certificate ids to revoke.
    #[arg(required_unless_present = "all_from", conflicts_with = "all_from")]
    pub(super) certificate_ids: Vec<String>,
    /// Revoke every certificate registered under this CA.
    #[arg(long, value_name = "CA_ID")]
    pub(super) all_from: Option<String>,
    /// Deactivate the CA first so that no new device registers meanwhile (asked when interactive).
    #[arg(long)]
    pub(super) deactivate_ca: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(super) yes: bool,
    /// UpdateCertificate calls per second (AWS's default quota is 10).
    #[arg(long, default_value = "10")]
    pub(super) rate: NonZeroU32,
    #[command(flatten)]
    pub(super) page: PageArgs,
}
