//! `fleetcert ca`: the lifecycle of the CA whose device certificates AWS IoT
//! registers just in time (JITR) — create, register with its verification
//! certificate, activate, auto-registration, issue device certificates, list,
//! revoke. Key and certificate work is in [`pki`] (pure), the AWS calls in
//! [`aws`]; this module holds the command line, files, prompts and output.
//!
//! Exit codes: 0 done, 1 failed (nothing or not everything done, said on
//! stderr), 2 bad usage (clap's code too), 3 partly done (the report says
//! which certificates were and were not changed).

pub mod aws;
pub mod pki;

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use time::OffsetDateTime;

use self::aws::{Connection, Iot, RevokeReport};
use self::pki::{CaSpec, DeviceSpec, KeyAlgorithm, LoadedCa};

/// Exit code: everything asked was done.
pub const EXIT_OK: i32 = 0;
/// Exit code: failed; stderr says what, and what (if anything) was changed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage (also clap's code for bad arguments).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: part of a batch was done; the report lists what was and was not.
pub const EXIT_PARTIAL: i32 = 3;

/// Manage the CA that signs device certificates for just-in-time registration.
///
/// Exit codes: 0 ok, 1 failure, 2 usage error, 3 partial failure (some
/// certificates changed, the report says which).
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 ok, 1 failure, 2 usage error, 3 partial failure")]
pub struct CaArgs {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Args, Clone)]
struct GlobalArgs {
    /// AWS IoT endpoint to call instead of AWS's (e.g. http://127.0.0.1:5000
    /// for a local AWS API). Default: AWS_ENDPOINT_URL, else AWS.
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region. Default: AWS_REGION, else the profile's region.
    #[arg(long, global = true)]
    region: Option<String>,
    /// AWS profile to take credentials and region from.
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Attempts per AWS call (standard retry with back-off on throttling and 5xx).
    #[arg(long, global = true, default_value_t = 3, value_name = "N")]
    max_attempts: u32,
    /// Print JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
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
struct CaIdArg {
    /// CA certificate id.
    ca_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
struct PageArgs {
    /// Items per page asked of AWS (1-250).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=250))]
    page_size: Option<i32>,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Directory for <name>.crt.pem and <name>.key.pem (the key with mode 0600).
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// File name stem.
    #[arg(long, default_value = "ca")]
    name: String,
    /// Subject common name.
    #[arg(long, default_value = "fleetcert JITR CA")]
    common_name: String,
    /// Subject organization.
    #[arg(long)]
    organization: Option<String>,
    /// Validity in days (an intermediate never outlives its issuer).
    #[arg(long, default_value_t = 3650)]
    days: u32,
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::EcdsaP256)]
    key_algorithm: KeyAlgorithm,
    /// Issuer CA certificate: makes an intermediate CA signed by it.
    #[arg(long, requires = "issuer_key")]
    issuer_cert: Option<PathBuf>,
    /// Issuer CA private key.
    #[arg(long, requires = "issuer_cert")]
    issuer_key: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct RegisterArgs {
    /// CA certificate (PEM).
    #[arg(long)]
    ca_cert: PathBuf,
    /// CA private key (PEM), to sign the verification certificate.
    #[arg(long)]
    ca_key: PathBuf,
    /// Register the CA ACTIVE (default: INACTIVE).
    #[arg(long)]
    activate: bool,
    /// Turn auto-registration (JITR) on.
    #[arg(long)]
    auto_registration: bool,
    /// Also write the verification certificate here (for inspection).
    #[arg(long)]
    verification_cert_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// CA certificate (PEM).
    #[arg(long)]
    ca_cert: PathBuf,
    /// CA private key (PEM).
    #[arg(long)]
    ca_key: PathBuf,
    /// Device name: the subject common name and the file name stem (the thing name, usually).
    #[arg(long)]
    name: String,
    /// Directory for <name>.crt.pem, <name>.chain.pem and <name>.key.pem (mode 0600).
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Validity in days (cut to the CA's own).
    #[arg(long, default_value_t = 365)]
    days: u32,
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::EcdsaP256)]
    key_algorithm: KeyAlgorithm,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// Certificate ids to revoke.
    #[arg(required_unless_present = "all_from", conflicts_with = "all_from")]
    certificate_ids: Vec<String>,
    /// Revoke every certificate registered under this CA.
    #[arg(long, value_name = "CA_ID")]
    all_from: Option<String>,
    /// Deactivate the CA first so that no new device registers meanwhile (asked when interactive).
    #[arg(long)]
    deactivate_ca: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
    /// UpdateCertificate calls per second (AWS's default quota is 10).
    #[arg(long, default_value = "10")]
    rate: NonZeroU32,
    #[command(flatten)]
    page: PageArgs,
}

/// How a command ended when it did not simply fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Part of a batch done; the report was printed.
    Partial,
    /// Nothing done; the report was printed.
    Failed,
}

/// Bad usage found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// Runs `fleetcert ca …` and exits with the documented code on failure.
pub fn run(args: CaArgs) -> anyhow::Result<()> {
    let result = match tokio::runtime::Handle::try_current() {
        // Called from an async main: run on its runtime.
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(dispatch(args))),
        Err(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(dispatch(args)),
    };
    let code = match result {
        Ok(Outcome::Done) => EXIT_OK,
        Ok(Outcome::Partial) => EXIT_PARTIAL,
        Ok(Outcome::Failed) => EXIT_FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            }
        }
    };
    if code == EXIT_OK {
        return Ok(());
    }
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

async fn dispatch(args: CaArgs) -> anyhow::Result<Outcome> {
    let g = args.global;
    // X.509 validity has whole seconds.
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    match args.command {
        CaCommand::Create(a) => create(&g, a, now),
        CaCommand::IssueDevice(a) => issue_device(&g, a, now),
        CaCommand::Register(a) => register(&g, a, now).await,
        CaCommand::Activate(a) => {
            connect(&g).await?.set_ca_status(&a.ca_id, true).await?;
            eprintln!("CA {} is ACTIVE", a.ca_id);
            Ok(Outcome::Done)
        }
        CaCommand::Deactivate(a) => {
            connect(&g).await?.set_ca_status(&a.ca_id, false).await?;
            eprintln!("CA {} is INACTIVE", a.ca_id);
            Ok(Outcome::Done)
        }
        CaCommand::AutoRegistration { state, ca_id } => {
            let on = matches!(state, OnOff::On);
            connect(&g).await?.set_auto_registration(&ca_id, on).await?;
            eprintln!(
                "auto-registration of CA {ca_id} is {}",
                if on { "ENABLED" } else { "DISABLED" }
            );
            Ok(Outcome::Done)
        }
        CaCommand::List(p) => list(&g, p).await,
        CaCommand::Describe { ca_id, pem } => describe(&g, &ca_id, pem).await,
        CaCommand::Certificates { ca_id, page } => certificates(&g, &ca_id, page).await,
        CaCommand::Revoke(a) => revoke(&g, a).await,
    }
}

async fn connect(g: &GlobalArgs) -> anyhow::Result<Iot> {
    Iot::connect(&Connection {
        endpoint_url: g.endpoint_url.clone(),
        region: g.region.clone(),
        profile: g.profile.clone(),
        max_attempts: g.max_attempts,
    })
    .await
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn load_ca(cert: &Path, key: &Path) -> anyhow::Result<LoadedCa> {
    let cert_pem = read_text(cert, "CA certificate")?;
    let key_pem = read_text(key, "CA key")?;
    Ok(LoadedCa::from_pem(
        &cert.display().to_string(),
        &cert_pem,
        &key.display().to_string(),
        &key_pem,
    )?)
}

/// A file to write; `secret` ones get mode 0600.
struct OutFile {
    path: PathBuf,
    contents: String,
    secret: bool,
}

/// Writes every file or none: refuses existing files unless `force`, writes
/// temporary files (keys created 0600), fsyncs, then renames them into place.
fn write_files(files: &[OutFile], force: bool) -> anyhow::Result<()> {
    if !force && let Some(f) = files.iter().find(|f| f.path.exists()) {
        return Err(UsageError(format!(
            "{} exists; pass --force to overwrite it (nothing was written)",
            f.path.display()
        ))
        .into());
    }
    let mut temps: Vec<PathBuf> = Vec::new();
    let result = write_temps(files, &mut temps);
    if let Err(e) = result {
        for t in &temps {
            let _ = std::fs::remove_file(t);
        }
        return Err(e.context("nothing was written"));
    }
    for (f, tmp) in files.iter().zip(&temps) {
        std::fs::rename(tmp, &f.path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), f.path.display()))?;
    }
    Ok(())
}

/// Writes each file to a temporary sibling (pushed to `temps`), synced.
fn write_temps(files: &[OutFile], temps: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for f in files {
        let dir = match f.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let name = f
            .path
            .file_name()
            .context("an output path has no file name")?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if f.secret { 0o600 } else { 0o644 })
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        temps.push(tmp.clone());
        file.write_all(f.contents.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot serialize the output")?;
    println!("{text}");
    Ok(())
}

fn create(g: &GlobalArgs, a: CreateArgs, now: OffsetDateTime) -> anyhow::Result<Outcome> {
    let parent = match (&a.issuer_cert, &a.issuer_key) {
        (Some(c), Some(k)) => Some(load_ca(c, k)?),
        _ => None,
    };
    let made = pki::create_ca(
        &CaSpec {
            common_name: a.common_name.clone(),
            organization: a.organization.clone(),
            days: a.days,
            algorithm: a.key_algorithm,
        },
        parent.as_ref(),
        now,
    )?;
    let info = pki::certificate_info("the new CA certificate", &made.cert_pem)?;
    let cert = a.out_dir.join(format!("{}.crt.pem", a.name));
    let key = a.out_dir.join(format!("{}.key.pem", a.name));
    write_files(
        &[
            OutFile {
                path: key.clone(),
                contents: made.key_pem,
                secret: true,
            },
            OutFile {
                path: cert.clone(),
                contents: made.cert_pem,
                secret: false,
            },
        ],
        a.force,
    )?;
    let not_after = pki::rfc3339(made.not_after);
    if g.json {
        print_json(&serde_json::json!({
            "certificate": cert, "key": key, "notAfter": not_after,
            "subject": info.subject, "issuer": info.issuer, "serial": info.serial,
            "intermediate": parent.is_some(),
        }))?;
    } else {
        println!("{}", cert.display());
        println!("{}", key.display());
    }
    eprintln!(
        "created {} CA {:?} valid until {not_after}; keep {} secret (mode 0600)",
        if parent.is_some() {
            "intermediate"
        } else {
            "self-signed"
        },
        info.subject,
        key.display()
    );
    Ok(Outcome::Done)
}

async fn register(g: &GlobalArgs, a: RegisterArgs, now: OffsetDateTime) -> anyhow::Result<Outcome> {
    // Everything that can be checked locally is checked before any AWS call.
    let ca = load_ca(&a.ca_cert, &a.ca_key)?;
    ca.check_valid_at(now)?;
    let iot = connect(g).await?;
    let code = iot.registration_code().await?;
    let verification = pki::verification_certificate(&ca, &code, now)?;
    if let Some(path) = &a.verification_cert_out {
        write_files(
            &[OutFile {
                path: path.clone(),
                contents: verification.cert_pem.clone(),
                secret: false,
            }],
            true,
        )?;
    }
    let registered = iot
        .register_ca(
            ca.cert_pem(),
            &verification.cert_pem,
            a.activate,
            a.auto_registration,
        )
        .await?;
    if g.json {
        print_json(&serde_json::json!({
            "certificateId": registered.certificate_id,
            "certificateArn": registered.certificate_arn,
            "registrationCode": code,
            "status": if a.activate { "ACTIVE" } else { "INACTIVE" },
            "autoRegistrationStatus": if a.auto_registration { "ENABLE" } else { "DISABLE" },
        }))?;
    } else {
        println!("{}", registered.certificate_id);
    }
    eprintln!(
        "registered CA {} ({}, auto-registration {})",
        registered.certificate_id,
        if a.activate { "ACTIVE" } else { "INACTIVE" },
        if a.auto_registration { "on" } else { "off" },
    );
    Ok(Outcome::Done)
}

fn issue_device(g: &GlobalArgs, a: IssueArgs, now: OffsetDateTime) -> anyhow::Result<Outcome> {
    let ca = load_ca(&a.ca_cert, &a.ca_key)?;
    let bundle = pki::issue_device(
        &ca,
        &DeviceSpec {
            common_name: a.name.clone(),
            days: a.days,
            algorithm: a.key_algorithm,
        },
        now,
    )?;
    let stem = a.name.replace(['/', '\\'], "_");
    let cert = a.out_dir.join(format!("{stem}.crt.pem"));
    let chain = a.out_dir.join(format!("{stem}.chain.pem"));
    let key = a.out_dir.join(format!("{stem}.key.pem"));
    write_files(
        &[
            OutFile {
                path: key.clone(),
                contents: bundle.key_pem,
                secret: true,
            },
            OutFile {
                path: cert.clone(),
                contents: bundle.cert_pem,
                secret: false,
            },
            OutFile {
                path: chain.clone(),
                contents: bundle.chain_pem,
                secret: false,
            },
        ],
        a.force,
    )?;
    let not_after = pki::rfc3339(bundle.not_after);
    if bundle.clamped {
        eprintln!(
            "note: validity cut to the CA's: {} days asked, valid until {not_after}",
            a.days
        );
    }
    if g.json {
        print_json(&serde_json::json!({
            "certificate": cert, "chain": chain, "key": key, "notAfter": not_after,
        }))?;
    } else {
        println!("{}", chain.display());
        println!("{}", key.display());
        eprintln!(
            "device {:?}: present {} (device + CA) with key {}; certificate alone in {}",
            a.name,
            chain.display(),
            key.display(),
            cert.display()
        );
    }
    Ok(Outcome::Done)
}

/// A progress indicator on stderr, hidden when stderr is not a terminal.
fn progress(len: Option<u64>, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let style = match len {
        Some(_) => {
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
        }
        None => ProgressStyle::with_template("{spinner} {msg}: {pos}"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    if len.is_none() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, &w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

async fn list(g: &GlobalArgs, p: PageArgs) -> anyhow::Result<Outcome> {
    let iot = connect(g).await?;
    let bar = progress(None, "CA certificates");
    let cas = iot
        .list_cas(p.page_size, |n| bar.set_position(n as u64))
        .await;
    bar.finish_and_clear();
    let cas = cas?;
    if g.json {
        print_json(&cas)?;
    } else {
        let rows: Vec<_> = cas
            .iter()
            .map(|c| {
                vec![
                    c.certificate_id.clone(),
                    or_dash(&c.status),
                    or_dash(&c.creation_date),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["CA CERTIFICATE ID", "STATUS", "CREATED"], &rows)
        );
    }
    Ok(Outcome::Done)
}

async fn describe(g: &GlobalArgs, ca_id: &str, pem: bool) -> anyhow::Result<Outcome> {
    let d = connect(g).await?.describe_ca(ca_id).await?;
    if g.json {
        print_json(&d)?;
        return Ok(Outcome::Done);
    }
    let fields = [
        ("certificate id", Some(d.certificate_id.clone())),
        ("arn", d.certificate_arn.clone()),
        ("status", d.status.clone()),
        ("auto-registration", d.auto_registration_status.clone()),
        ("mode", d.certificate_mode.clone()),
        ("owner", d.owned_by.clone()),
        ("created", d.creation_date.clone()),
        ("modified", d.last_modified_date.clone()),
        ("not before", d.not_before.clone()),
        ("not after", d.not_after.clone()),
    ];
    for (k, v) in fields {
        println!("{:<18} {}", format!("{k}:"), or_dash(&v));
    }
    if let Some(p) = d.certificate_pem.as_ref().filter(|_| pem) {
        print!("{p}");
    }
    Ok(Outcome::Done)
}

async fn certificates(g: &GlobalArgs, ca_id: &str, p: PageArgs) -> anyhow::Result<Outcome> {
    let iot = connect(g).await?;
    let bar = progress(None, "certificates");
    let certs = iot
        .list_certificates_by_ca(ca_id, p.page_size, |n| bar.set_position(n as u64))
        .await;
    bar.finish_and_clear();
    let certs = certs?;
    if g.json {
        print_json(&certs)?;
    } else {
        let rows: Vec<_> = certs
            .iter()
            .map(|c| {
                vec![
                    c.certificate_id.clone(),
                    or_dash(&c.status),
                    or_dash(&c.certificate_mode),
                    or_dash(&c.creation_date),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["CERTIFICATE ID", "STATUS", "MODE", "CREATED"], &rows)
        );
    }
    Ok(Outcome::Done)
}

/// Asks a yes/no question on stderr; `None` when stdin is not a terminal.
fn ask(question: &str, default: bool) -> anyhow::Result<Option<bool>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("{question} [{}] ", if default { "Y/n" } else { "y/N" });
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(Some(match line.trim().to_ascii_lowercase().as_str() {
        "" => default,
        "y" | "yes" => true,
        _ => false,
    }))
}

async fn revoke(g: &GlobalArgs, a: RevokeArgs) -> anyhow::Result<Outcome> {
    if a.deactivate_ca && a.all_from.is_none() {
        return Err(UsageError("--deactivate-ca needs --all-from <CA_ID>".into()).into());
    }
    let iot = connect(g).await?;
    let (ids, already) = match &a.all_from {
        Some(ca_id) => {
            let bar = progress(None, "certificates to revoke");
            let certs = iot
                .list_certificates_by_ca(ca_id, a.page.page_size, |n| bar.set_position(n as u64))
                .await;
            bar.finish_and_clear();
            let certs = certs.context("nothing was revoked")?;
            let total = certs.len();
            let ids: Vec<String> = certs
                .into_iter()
                .filter(|c| c.status.as_deref() != Some("REVOKED"))
                .map(|c| c.certificate_id)
                .collect();
            let already = total - ids.len();
            (ids, already)
        }
        None => {
            let mut ids = a.certificate_ids.clone();
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            (ids, 0)
        }
    };
    let scope = match &a.all_from {
        Some(ca) => format!("registered under CA {ca}"),
        None => "given".to_owned(),
    };
    if already > 0 {
        eprintln!("{already} certificate(s) {scope} are already REVOKED");
    }
    if ids.is_empty() {
        eprintln!("nothing to revoke");
        if g.json {
            print_json(&RevokeReport::default())?;
        }
        return Ok(Outcome::Done);
    }

    if !a.yes {
        match ask(
            &format!("revoke {} certificate(s) {scope}?", ids.len()),
            false,
        )? {
            Some(true) => {}
            Some(false) => {
                eprintln!("nothing was revoked");
                return Ok(Outcome::Failed);
            }
            None => {
                return Err(UsageError(format!(
                    "refusing to revoke {} certificate(s) without confirmation: stdin is not a \
                     terminal, pass --yes (nothing was revoked)",
                    ids.len()
                ))
                .into());
            }
        }
    }

    let mut deactivated = false;
    if let Some(ca_id) = &a.all_from {
        let deactivate = a.deactivate_ca
            || (!a.yes
                && ask(
                    &format!(
                        "deactivate CA {ca_id} first, so that no new device registers with it meanwhile?"
                    ),
                    true,
                )?
                .unwrap_or(false));
        if deactivate {
            iot.set_ca_status(ca_id, false)
                .await
                .context("cannot deactivate the CA; nothing was revoked")?;
            deactivated = true;
            eprintln!("CA {ca_id} is INACTIVE");
        } else {
            eprintln!(
                "note: CA {ca_id} stays as it is: if ACTIVE, devices can still register \
                 certificates it signed (--deactivate-ca deactivates it first)"
            );
        }
    }

    let bar = progress(Some(ids.len() as u64), "revoking");
    let json = g.json;
    let report = iot
        .revoke_many(&ids, a.rate, |id, result| {
            bar.inc(1);
            if !json {
                bar.suspend(|| match result {
                    Ok(()) => println!("revoked {id}"),
                    Err(e) => println!("failed  {id}: {e}"),
                });
            }
        })
        .await;
    bar.finish_and_clear();

    if json {
        let mut v = serde_json::to_value(&report).context("cannot serialize the report")?;
        if let (Some(obj), Some(ca)) = (v.as_object_mut(), &a.all_from) {
            obj.insert("caCertificateId".into(), ca.clone().into());
            obj.insert("caDeactivated".into(), deactivated.into());
        }
        print_json(&v)?;
    } else {
        for id in &report.not_attempted {
            println!("not sent {id}");
        }
    }
    eprintln!(
        "revoked {} of {}; {} failed; {} not sent",
        report.revoked.len(),
        ids.len(),
        report.failed.len(),
        report.not_attempted.len()
    );
    if let Some(why) = &report.stopped_by {
        eprintln!("error: stopped after a service failure: {why}");
    }
    Ok(
        if report.failed.is_empty() && report.not_attempted.is_empty() {
            Outcome::Done
        } else if report.revoked.is_empty() {
            Outcome::Failed
        } else {
            Outcome::Partial
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }
    #[derive(Debug, Subcommand)]
    enum Top {
        Ca(CaArgs),
    }

    fn parse(args: &[&str]) -> Result<CaArgs, clap::Error> {
        let mut v = vec!["fleetcert", "ca"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| match c.command {
            Top::Ca(a) => a,
        })
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let a = parse(&[
            "--region",
            "eu-west-1",
            "list",
            "--json",
            "--endpoint-url",
            "http://x",
        ])
        .unwrap();
        assert_eq!(a.global.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.global.endpoint_url.as_deref(), Some("http://x"));
        assert!(a.global.json);
    }

    #[test]
    fn revoke_needs_ids_or_all_from_but_not_both() {
        assert!(parse(&["revoke"]).is_err());
        assert!(parse(&["revoke", "a", "--all-from", "ca"]).is_err());
        assert!(parse(&["revoke", "a", "--rate", "0"]).is_err());
        let a = parse(&["revoke", "--all-from", "ca", "--yes", "--rate", "5"]).unwrap();
        match a.command {
            CaCommand::Revoke(r) => {
                assert_eq!(r.rate.get(), 5);
                assert!(r.yes);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn table_pads_columns() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["abc".into(), "ACTIVE".into()],
                vec!["a".into(), "-".into()],
            ],
        );
        assert_eq!(t, "ID   STATUS\nabc  ACTIVE\na    -\n");
    }

    #[test]
    fn write_files_writes_keys_0600_and_never_overwrites_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub/a.key.pem");
        let files = [OutFile {
            path: key.clone(),
            contents: "k".into(),
            secret: true,
        }];
        write_files(&files, false).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_files(&files, false).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        write_files(&files, true).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
