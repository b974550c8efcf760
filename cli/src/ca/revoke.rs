//! `fleetcert ca revoke`: revocation of certificates in bulk, paced, each reported revoked, failed or not sent.

use anyhow::Context;

use super::args::{GlobalArgs, RevokeArgs};
use super::aws::RevokeReport;
use super::output::{ask, print_json, progress};
use super::{Outcome, UsageError, connect};

pub(super) async fn revoke(g: &GlobalArgs, a: RevokeArgs) -> anyhow::Result<Outcome> {
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
