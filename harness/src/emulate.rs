//! `fleetcert emulate`: the [`Cloud`] for devices outside fleetcert
//! (firmware under test, `mosquitto_pub`), driven through a directory.
//!
//! `<dir>/root-ca.pem` is the CA the broker's server certificate chains
//! to. A CSR dropped as `<dir>/csr/<thing>.csr` registers a device: the
//! certificate, ACTIVE and attached to the thing and the device policy
//! (fleetcert's, or the customer's of `--device-policy FILE`),
//! appears as `<dir>/certs/<thing>.pem`. Touching `<dir>/audit-now` runs
//! the emulated audit; support notifications are appended to
//! `<dir>/notifications.jsonl`.
//!
//! Beside the directory, [`serve_api`] serves AWS IoT's API on the same
//! cloud (`aws --endpoint-url`, boto3, `fleetcert ca --endpoint-url`): a CA
//! registered through it redeploys the synthesized stack with that CA's
//! JITR rule, as `fleetcert synth` with `[jitr] ca_certificate_ids` and a
//! deploy would, so devices it signed come in by JITR.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use emulator::api::{ApiOptions, ApiServer, Synthesize};
use emulator::{Cloud, CloudConfig};
use rules::policy::PolicyDocument;

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct EmulateOptions {
    /// Port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// Port of AWS IoT's API on 127.0.0.1 (0: a free one), for
    /// [`serve_api`].
    pub api_port: u16,
    /// The working directory.
    pub dir: PathBuf,
    /// Run the audit this often.
    pub audit_every: Option<Duration>,
    /// The audit threshold, days.
    pub threshold_days: u32,
    /// Validity of the certificates registered from CSRs, days.
    pub validity_days: u32,
    /// A customer IoT policy (JSON) attached to registered devices instead
    /// of fleetcert's device policy, created in the emulated account under
    /// the file's stem as its name.
    pub device_policy: Option<PathBuf>,
}

/// Reads a customer policy file: its name (the file's stem) and document.
///
/// # Errors
/// When the file cannot be read, is not an IoT policy, or its stem is not
/// a name `CreatePolicy` accepts.
pub fn customer_policy(path: &Path) -> anyhow::Result<(String, PolicyDocument)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let document = PolicyDocument::parse(&text)
        .with_context(|| format!("{} is not an IoT policy", path.display()))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        rules::policy_copy::is_policy_name(&name),
        "{}: the policy is named after the file, and {name:?} is not an IoT policy name ([A-Za-z0-9_+=,.@-], 1 to 128)",
        path.display()
    );
    Ok((name, document))
}

/// What the running emulator tells its user; `api` is the API's
/// `--endpoint-url`.
pub fn instructions(endpoint: SocketAddr, api: &str, dir: &Path) -> String {
    format!(
        "fleetcert emulator: MQTT 3.1.1 over mutual TLS on {endpoint}\n\
         AWS IoT API:       {api} (any credentials, e.g. AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x)\n\
         \x20                  aws iot list-certificates --endpoint-url {api} --region us-east-1\n\
         \x20                  fleetcert ca register ... --endpoint-url {api} --region us-east-1\n\
         \x20                  boto3.client(\"iot\", endpoint_url=\"{api}\", region_name=\"us-east-1\")\n\
         \x20                  a CA registered with auto-registration lets the devices it signed in by JITR\n\
         server root CA:    {ca}\n\
         register a device: put a CSR whose CN is the thing name into {csr}/<thing>.csr\n\
         \x20                  e.g. openssl ecparam -name prime256v1 -genkey -noout -out dev.key\n\
         \x20                       openssl req -new -key dev.key -subj /CN=thing-1 -out {csr}/thing-1.csr\n\
         \x20                  the certificate appears as {certs}/<thing>.pem (ACTIVE, thing and device policy attached)\n\
         connect:           client id = thing name, e.g. mosquitto_sub -h 127.0.0.1 -p {port} --cafile {ca} \\\n\
         \x20                    --cert {certs}/thing-1.pem --key dev.key -i thing-1 -q 1 \\\n\
         \x20                    -t management/topic/thing-1/csr_req -t management/topic/thing-1/crt\n\
         run an audit:      touch {audit}\n\
         notifications:     {notes}\n\
         stop:              Ctrl-C\n",
        ca = dir.join("root-ca.pem").display(),
        csr = dir.join("csr").display(),
        certs = dir.join("certs").display(),
        audit = dir.join("audit-now").display(),
        notes = dir.join("notifications.jsonl").display(),
        port = endpoint.port(),
    )
}

/// Starts the cloud for `opts` (writing the root CA into the directory).
///
/// # Errors
/// When the directory cannot be made or the cloud cannot start.
pub async fn start(opts: &EmulateOptions) -> anyhow::Result<Cloud> {
    for sub in ["csr", "certs"] {
        std::fs::create_dir_all(opts.dir.join(sub))
            .with_context(|| format!("cannot create {}", opts.dir.join(sub).display()))?;
    }
    let (mut deployment, _) = crate::simulate::synthesized_deployment(&[])?;
    let customer = opts
        .device_policy
        .as_deref()
        .map(customer_policy)
        .transpose()?;
    if let Some((name, document)) = &customer {
        deployment = deployment.with_policy(name, document.clone());
    }
    let mut config = CloudConfig::new(deployment);
    if let Some((name, _)) = customer {
        config.device_policy = name;
    }
    config.emulator.bind = SocketAddr::from(([127, 0, 0, 1], opts.port));
    config.emulator.root_ca_file = Some(opts.dir.join("root-ca.pem"));
    config.sweep_every = Some(Duration::from_secs(60));
    config.audit_every = opts.audit_every.map(|d| (d, opts.threshold_days));
    Ok(Cloud::start(config).await?)
}

/// Serves AWS IoT's API for `cloud` on 127.0.0.1:`opts.api_port`: a CA
/// registered through it redeploys the stack synthesized with every
/// registered CA's JITR rule (and the customer's device policy).
///
/// # Errors
/// When the customer policy cannot be read or the port cannot be bound.
pub async fn serve_api(cloud: &Cloud, opts: &EmulateOptions) -> anyhow::Result<ApiServer> {
    let customer = opts
        .device_policy
        .as_deref()
        .map(customer_policy)
        .transpose()?;
    let synthesize: Synthesize = std::sync::Arc::new(move |ids: &[String]| {
        let (mut deployment, _) =
            crate::simulate::synthesized_deployment(ids).map_err(|e| format!("{e:#}"))?;
        if let Some((name, document)) = &customer {
            deployment = deployment.with_policy(name, document.clone());
        }
        Ok(deployment)
    });
    Ok(cloud
        .serve_api(ApiOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], opts.api_port)),
            synthesize: Some(synthesize),
            audit_threshold_days: opts.threshold_days,
        })
        .await?)
}

/// Serves the directory until `shutdown` completes: registers dropped
/// CSRs, runs requested audits, writes notifications.
///
/// # Errors
/// When the directory cannot be read or written.
pub async fn serve(
    cloud: &Cloud,
    opts: &EmulateOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut done: HashSet<String> = HashSet::new();
    let mut noted = 0;
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        for entry in std::fs::read_dir(opts.dir.join("csr"))? {
            let path = entry?.path();
            let Some(thing) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".csr"))
                .map(str::to_owned)
            else {
                continue;
            };
            if done.contains(&thing) {
                continue;
            }
            let csr = std::fs::read_to_string(&path)?;
            if !csr.contains("-----END") {
                continue; // still being written
            }
            done.insert(thing.clone());
            match cloud.register_csr(&thing, &csr, opts.validity_days).await {
                Ok(creds) => {
                    let out = opts.dir.join("certs").join(format!("{thing}.pem"));
                    let tmp = out.with_extension("pem.tmp");
                    std::fs::write(&tmp, &creds.certificate_pem)?;
                    std::fs::rename(&tmp, &out)?;
                    println!(
                        "registered {thing}: certificate {} -> {}",
                        creds.certificate_id,
                        out.display()
                    );
                }
                Err(e) => eprintln!("cannot register {thing}: {e}"),
            }
        }
        let trigger = opts.dir.join("audit-now");
        if trigger.exists() {
            let _ = std::fs::remove_file(&trigger);
            match cloud.audit_now(opts.threshold_days).await {
                Ok(r) => println!(
                    "audit {}: {} certificates expiring within {} days; {}",
                    r.task_id, r.findings, opts.threshold_days, r.outcome
                ),
                Err(e) => eprintln!("audit failed: {e}"),
            }
        }
        let notes = cloud.notifications();
        if notes.len() > noted {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(opts.dir.join("notifications.jsonl"))?;
            for n in &notes[noted..] {
                println!("support notification: {}", n.subject);
                writeln!(
                    file,
                    "{}",
                    serde_json::json!({"subject": n.subject, "message": n.message})
                )?;
            }
            noted = notes.len();
        }
    }
}
