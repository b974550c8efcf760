//! `fleetcert ca`: the lifecycle of the CA whose device certificates AWS IoT
//! registers just in time (JITR) — create, register with its verification
//! certificate, activate, auto-registration, issue device certificates, list,
//! revoke. Key and certificate work is in [`pki`] (pure), the AWS calls in
//! [`aws`]; the command line in `args`, files written all or none in
//! `files`, tables, JSON and prompts in `output`, bulk revocation in
//! `revoke`; this module dispatches the commands.
//!
//! Exit codes: 0 done, 1 failed (nothing or not everything done, said on
//! stderr), 2 bad usage (clap's code too), 3 partly done (the report says
//! which certificates were and were not changed).

mod args;
pub mod aws;
mod files;
mod output;
pub mod pki;
mod revoke;

pub use args::CaArgs;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use time::OffsetDateTime;

use self::aws::{Connection, Iot};
use self::pki::{CaSpec, DeviceSpec, LoadedCa};

use self::args::{CaCommand, CreateArgs, GlobalArgs, IssueArgs, OnOff, PageArgs, RegisterArgs};
use self::files::{OutFile, read_text, write_files};
use self::output::{or_dash, print_json, progress, table};
use self::revoke::revoke;

/// Exit code: everything asked was done.
pub const EXIT_OK: i32 = 0;

/// Exit code: failed; stderr says what, and what (if anything) was changed.
pub const EXIT_FAILURE: i32 = 1;

/// Exit code: bad usage (also clap's code for bad arguments).
pub const EXIT_USAGE: i32 = 2;

/// Exit code: part of a batch was done; the report lists what was and was not.
pub const EXIT_PARTIAL: i32 = 3;

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

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
}
