//! The whole cloud half in one process: the broker wired to the Lambda
//! handlers through the in-memory adapters of `lambdas::memory`.
//!
//! One registry of truth: the broker's connect decisions read the same
//! [`MemoryRegistry`] the handlers change ([`SharedRegistry`] adapts it to
//! the broker's [`Registry`] port), so a certificate issued by
//! `CreateCertificateFromCsr` connects as soon as the CSR issuer activates
//! it, and deactivating or deleting a certificate closes its connections.
//! Topic rule actions run the handlers in process ([`HandlerSink`]), the
//! publisher port delivers into the broker, the work queue drives the
//! rotation starter, support notifications are kept (and logged), and an
//! emulated Device Defender audit ([`Cloud::audit_now`]) and the sweeper
//! ([`Cloud::sweep_now`]) run on command or on a schedule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambdas::config::Config as HandlerConfig;
use lambdas::handlers::Outcome;
use lambdas::memory::{MemoryPorts, MemoryRegistry, Notification, Published};
use lambdas::ports::{IotRegistry, Notifier, PortError, QueueMessage};
use rules::contracts::AuditFinding;
use rules::functions::Function;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::api::{ApiOptions, ApiServer};
use crate::kms::Caller;
use crate::lambda::{InvokeError, LambdaService, Trigger};
use crate::registry::{CaView, CertificateStatus, CertificateView, Registry, RegistryError};
use crate::sink::{BoxFuture, RuleSink};
use crate::{Deployment, Emulator, EmulatorConfig, EmulatorError};

/// The check fleetcert's audit reacts to, as the emulated audit names it.
pub const EXPIRING_CHECK: &str = "DEVICE_CERTIFICATE_EXPIRING_CHECK";
/// The certificate-age check, run when the template enables it.
pub const AGE_CHECK: &str = "DEVICE_CERTIFICATE_AGE_CHECK";
/// The device policy's name in the synthesized template (its logical id).
pub const DEVICE_POLICY: &str = "DevicePolicy";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Rewrites what the cloud publishes before the broker delivers it: return
/// nothing to drop the message, two to duplicate it. For fault injection
/// and tests (e.g. a tampered `crt`).
pub type PublishHook = Arc<dyn Fn(Published) -> Vec<Published> + Send + Sync>;

/// How the cloud runs.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The broker's listening and TLS settings.
    pub emulator: EmulatorConfig,
    /// The synthesized template's policies and topic rules.
    pub deployment: Deployment,
    /// The handlers' configuration; its device policy (JITR's), when set,
    /// must be one of the deployment's.
    pub handlers: HandlerConfig,
    /// The IoT policy attached to the certificates the cloud provisions
    /// ([`Cloud::register_csr`], the simulation's fleet): fleetcert's
    /// [`DEVICE_POLICY`], or a customer's added with
    /// [`Deployment::with_policy`]. Must be one of the deployment's.
    pub device_policy: String,
    /// How often the work queue is polled.
    pub queue_poll: Duration,
    /// How many times a failed Lambda invocation is retried (AWS retries an
    /// asynchronous invocation twice).
    pub lambda_retries: u32,
    /// Delay before the first retry (doubled each time).
    pub retry_delay: Duration,
    /// Run the sweeper this often; `None`: only on [`Cloud::sweep_now`].
    pub sweep_every: Option<Duration>,
    /// Run the audit this often with this threshold in days; `None`: only
    /// on [`Cloud::audit_now`].
    pub audit_every: Option<(Duration, u32)>,
    /// How many times a queue message is received before it is dropped
    /// (the dead-letter queue's `maxReceiveCount`).
    pub max_receive_count: u32,
    /// At most this many rotations open at once: queued work waits while
    /// the store holds as many open rotations, as a deployment's rotation
    /// starter is paced by its reserved concurrency and the
    /// `CreateCertificateFromCsr` quota. `None`: the whole queue at once.
    pub max_open_rotations: Option<usize>,
}

impl CloudConfig {
    /// Defaults for `deployment`: device policy [`DEVICE_POLICY`], the
    /// handlers' default configuration, queue polled every 5 ms, two Lambda
    /// retries, no schedules.
    pub fn new(deployment: Deployment) -> CloudConfig {
        CloudConfig {
            emulator: EmulatorConfig::default(),
            deployment,
            handlers: HandlerConfig::local(DEVICE_POLICY),
            device_policy: DEVICE_POLICY.to_owned(),
            queue_poll: Duration::from_millis(5),
            lambda_retries: 2,
            retry_delay: Duration::from_millis(20),
            sweep_every: None,
            audit_every: None,
            max_receive_count: 5,
            max_open_rotations: None,
        }
    }
}

/// Why the cloud cannot start or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// The broker did not start.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// The handlers' device policy is not in the deployment.
    #[error("device policy {name} is not in the deployed template (it has: {known})")]
    UnknownPolicy {
        /// The configured name.
        name: String,
        /// The deployment's policy names.
        known: String,
    },
    /// A registry call failed.
    #[error("{what}: {source}")]
    Registry {
        /// What was attempted.
        what: String,
        /// The port error.
        source: PortError,
    },
    /// csr-issuer's issuer settings in the template do not parse.
    #[error("csr-issuer's issuer in the template: {0}")]
    Issuer(lambdas::config::ConfigError),
    /// A key or CSR could not be generated.
    #[error("cannot generate a key or csr for {thing}: {reason}")]
    Key {
        /// The thing.
        thing: String,
        /// rcgen's message.
        reason: String,
    },
    /// A function was not invoked, or failed on every attempt.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The emulated Device Defender audit could not run or notify.
    #[error("device defender audit: {reason}")]
    Audit {
        /// Why.
        reason: String,
    },
    /// The template has no such CloudWatch alarm.
    #[error("cloudwatch alarm: {reason}")]
    Alarm {
        /// Why.
        reason: String,
    },
}

/// A provisioned device's certificate and key.
#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    /// The thing name (the MQTT client id).
    pub thing_name: String,
    /// The certificate id.
    pub certificate_id: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key, PKCS#8 PEM.
    pub private_key_pem: String,
}

/// How [`Cloud::provision_device`] provisions one device.
#[derive(Debug, Clone, Copy)]
pub struct Provisioning<'a> {
    /// The thing the device connects as.
    pub thing: &'a str,
    /// Its certificate's subject CN (need not be the thing name).
    pub common_name: &'a str,
    /// Days until the certificate expires.
    pub validity_days: u32,
    /// Days ago the certificate was issued (its notBefore): a fleet's
    /// certificates were issued before fleetcert came, which the
    /// certificate-age check looks at. 0: now.
    pub issued_days_ago: u32,
    /// IoT policies attached to the certificate (the deployment's).
    pub policies: &'a [&'a str],
    /// Further things the certificate is attached to.
    pub other_things: &'a [&'a str],
}

/// What one emulated audit found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The audit task id.
    pub task_id: String,
    /// Certificates reported (expiring within the threshold or expired).
    pub findings: usize,
    /// What audit-fanout did with the notification.
    pub outcome: String,
}

/// What the cloud's handlers did since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudStats {
    /// Handler invocations (rule actions, queue batches, audits, sweeps).
    pub invocations: u64,
    /// Retries after a failed invocation.
    pub retries: u64,
    /// Invocations that failed on every retry.
    pub failures: u64,
    /// Audits run.
    pub audits: u64,
}

/// [`MemoryRegistry`] as the broker's [`Registry`] port: the broker and
/// the handlers share one registry.
#[derive(Debug, Clone)]
pub struct SharedRegistry {
    inner: MemoryRegistry,
    // the broker's own channel stays silent: the cloud's watcher follows
    // the registry's status changes and closes connections itself
    silent: broadcast::Sender<crate::registry::StatusChange>,
}

impl SharedRegistry {
    /// Adapts `inner`.
    pub fn new(inner: MemoryRegistry) -> SharedRegistry {
        SharedRegistry {
            inner,
            silent: broadcast::channel(1).0,
        }
    }
}

impl Registry for SharedRegistry {
    fn certificate(&self, id: &str) -> Option<CertificateView> {
        let c = self.inner.certificate(id)?;
        Some(CertificateView {
            id: c.certificate_id,
            status: c.status,
            things: c.things.into_iter().collect(),
            policies: c.policies.into_iter().collect(),
            ca_certificate_id: c.ca_certificate_id,
            registered_at_ms: u64::try_from(c.not_before_ms).unwrap_or(0),
        })
    }

    fn thing_exists(&self, name: &str) -> bool {
        self.inner.has_thing(name)
    }

    fn ca_certificates(&self) -> Vec<CaView> {
        self.inner
            .ca_certificates()
            .into_iter()
            .map(|ca| CaView {
                id: ca.ca_certificate_id,
                pem: ca.certificate_pem,
                active: ca.status == "ACTIVE",
                auto_registration: ca.auto_registration_status == "ENABLE",
            })
            .collect()
    }

    fn register_pending(
        &self,
        certificate_pem: &str,
        ca_certificate_id: &str,
        _now_ms: u64,
    ) -> Result<CertificateView, RegistryError> {
        let id = self.inner.auto_register(certificate_pem).map_err(|e| {
            RegistryError::InvalidCertificate {
                reason: e.to_string(),
            }
        })?;
        let view = self
            .certificate(&id)
            .ok_or_else(|| RegistryError::UnknownCertificate { id: id.clone() })?;
        if view.ca_certificate_id.as_deref() != Some(ca_certificate_id) {
            return Err(RegistryError::UnknownCa {
                id: ca_certificate_id.to_owned(),
            });
        }
        Ok(view)
    }

    fn status_changes(&self) -> broadcast::Receiver<crate::registry::StatusChange> {
        self.silent.subscribe()
    }

    fn policy_document(&self, name: &str) -> Option<Value> {
        // a policy of the deployment's has no document here (the broker
        // reads it from the template); one made by `CreatePolicy` has
        let text = self.inner.policy_document(name)?;
        serde_json::from_str(&text).ok()
    }
}

/// The topic rules' Lambda actions, into the emulated Lambda service.
#[derive(Debug, Clone)]
pub struct HandlerSink {
    lambda: LambdaService,
}

impl RuleSink for HandlerSink {
    fn invoke(&self, rule: &str, function: Function, event: Value) -> BoxFuture {
        let lambda = self.lambda.clone();
        let trigger = Trigger::Rule(rule.to_owned());
        Box::pin(async move {
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            let _ = lambda.invoke(&trigger, function, payload).await;
        })
    }
}

/// The running cloud: broker, registry, handlers, queue, notifications.
/// Dropping it stops everything.
pub struct Cloud {
    emulator: Arc<Emulator>,
    device_policy: String,
    ports: MemoryPorts,
    lambda: LambdaService,
    hook: Arc<Mutex<Option<PublishHook>>>,
    audit_seq: AtomicU64,
    audits: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("endpoint", &self.emulator.local_addr())
            .field("registry", &self.ports.ports.registry)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    i64::try_from(crate::registry::now_ms()).unwrap_or(i64::MAX)
}

/// The memory adapters and handler configuration for the issuer
/// csr-issuer's environment in the template names (`ISSUER`, `PCA_*`):
/// with AWS Private CA, the memory CA under the template's CA ARN,
/// registered in the registry (ACTIVE) as a deployment registers its CA in
/// AWS IoT, and `handlers` with that issuer; otherwise fresh adapters and
/// `handlers` as given.
///
/// # Errors
/// [`CloudError::Issuer`] when csr-issuer's issuer settings do not parse.
pub fn issuer_ports(
    deployment: &Deployment,
    handlers: &HandlerConfig,
) -> Result<(MemoryPorts, HandlerConfig), CloudError> {
    let env = deployment
        .wiring()
        .functions
        .get(&rules::functions::Function::CsrIssuer)
        .map(|def| def.environment.clone())
        .unwrap_or_default();
    let issuer = lambdas::config::IssuerConfig::from_lookup(|k| env.get(k).cloned())
        .map_err(CloudError::Issuer)?;
    match issuer {
        lambdas::config::IssuerConfig::AwsIot => Ok((MemoryPorts::new(), handlers.clone())),
        lambdas::config::IssuerConfig::PrivateCa(settings) => {
            let ports = MemoryPorts::with_private_ca(&settings.ca_arn);
            ports
                .ports
                .private_ca
                .register_in_iot()
                .map_err(|source| CloudError::Registry {
                    what: "registering the private ca".to_owned(),
                    source,
                })?;
            let handlers = HandlerConfig {
                issuer: lambdas::config::IssuerConfig::PrivateCa(settings),
                ..handlers.clone()
            };
            Ok((ports, handlers))
        }
    }
}

impl Cloud {
    /// Starts the broker and the cloud's background tasks (publisher,
    /// queue, status watcher, schedules). Must be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`CloudError::UnknownPolicy`] when the handlers' device policy is not
    /// deployed, [`CloudError::Emulator`] when the broker cannot start.
    pub async fn start(config: CloudConfig) -> Result<Cloud, CloudError> {
        let wanted = std::iter::once(&config.device_policy)
            .chain(config.handlers.device_policy_name.as_ref());
        for policy in wanted {
            if config.deployment.policy(policy).is_none() {
                return Err(CloudError::UnknownPolicy {
                    name: policy.clone(),
                    known: config
                        .deployment
                        .policy_names()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let (ports, handlers) = issuer_ports(&config.deployment, &config.handlers)?;
        let registry = ports.ports.registry.clone();
        registry.set_now_ms(now_ms());
        for name in config.deployment.policy_names() {
            registry.create_policy(name);
        }
        let lambda = LambdaService::new(
            ports.clone(),
            config.deployment.clone(),
            handlers,
            config.lambda_retries,
            config.retry_delay,
        );
        let sink = HandlerSink {
            lambda: lambda.clone(),
        };
        let status_rx = registry.subscribe_status();
        let emulator = Arc::new(
            Emulator::start(
                config.emulator.clone(),
                config.deployment.clone(),
                Arc::new(SharedRegistry::new(registry.clone())),
                Arc::new(sink.clone()),
            )
            .await?,
        );
        let hook: Arc<Mutex<Option<PublishHook>>> = Arc::default();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(watch_status(emulator.clone(), status_rx)));
        let (tx, rx) = mpsc::unbounded_channel();
        ports.ports.publisher.forward_to(tx);
        tasks.push(tokio::spawn(deliver(emulator.clone(), rx, hook.clone())));
        tasks.push(tokio::spawn(drive_queue(
            lambda.clone(),
            config.queue_poll,
            config.max_receive_count,
            config.max_open_rotations,
        )));
        tasks.push(tokio::spawn(log_notifications(ports.clone())));
        let audits: Arc<AtomicU64> = Arc::default();
        let cloud = Cloud {
            emulator,
            device_policy: config.device_policy.clone(),
            ports,
            lambda,
            hook,
            audit_seq: AtomicU64::new(0),
            audits: audits.clone(),
            tasks,
        };
        let mut cloud = cloud;
        if let Some(every) = config.sweep_every {
            let lambda = cloud.lambda.clone();
            cloud.tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let _ = run_sweep(&lambda).await;
                }
            }));
        }
        if let Some((every, days)) = config.audit_every {
            let lambda = cloud.lambda.clone();
            cloud.tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                let mut seq = 0u64;
                loop {
                    tick.tick().await;
                    seq += 1;
                    audits.fetch_add(1, Ordering::Relaxed);
                    match run_audit(&lambda, &format!("scheduled-{seq}"), days).await {
                        Ok(r) => tracing::info!(task = %r.task_id, findings = r.findings, outcome = %r.outcome, "scheduled audit"),
                        Err(e) => tracing::warn!(error = %e, "scheduled audit failed"),
                    }
                }
            }));
        }
        Ok(cloud)
    }

    /// The broker's address (127.0.0.1 unless configured otherwise).
    pub fn endpoint(&self) -> std::net::SocketAddr {
        self.emulator.local_addr()
    }

    /// The root CA (PEM) that signs the broker's server certificate:
    /// devices trust it.
    pub fn root_ca_pem(&self) -> &str {
        self.emulator.root_ca_pem()
    }

    /// The broker.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The in-memory adapters the handlers use (registry, publisher, store,
    /// notifier, queue) and their fault injection.
    pub fn ports(&self) -> &MemoryPorts {
        &self.ports
    }

    /// The registry.
    pub fn registry(&self) -> &MemoryRegistry {
        &self.ports.ports.registry
    }

    /// Sets (or clears) the hook every cloud publish passes through.
    pub fn set_publish_hook(&self, hook: Option<PublishHook>) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Creates a thing, a P-256 key, a certificate valid for
    /// `validity_days` from now (signed by the registry's root CA, as
    /// `CreateCertificateFromCsr` signs), ACTIVE, attached to the thing and
    /// the device policy.
    ///
    /// # Errors
    /// [`CloudError::Key`] or [`CloudError::Registry`].
    pub async fn register_device(
        &self,
        thing_name: &str,
        validity_days: u32,
    ) -> Result<DeviceCredentials, CloudError> {
        let policy = self.device_policy.clone();
        self.provision_device(&Provisioning {
            thing: thing_name,
            common_name: thing_name,
            validity_days,
            issued_days_ago: 0,
            policies: &[policy.as_str()],
            other_things: &[],
        })
        .await
    }

    /// Provisions a device as a fleet fleetcert did not provision may have
    /// it: a P-256 key, a certificate with its own subject CN, issued
    /// `issued_days_ago` and valid for `validity_days` from now (signed by
    /// the registry's root CA), ACTIVE, attached
    /// to its policies (each one of the deployment's) and to its thing and
    /// any other things (all created).
    ///
    /// # Errors
    /// [`CloudError::Key`] or [`CloudError::Registry`].
    pub async fn provision_device(
        &self,
        device: &Provisioning<'_>,
    ) -> Result<DeviceCredentials, CloudError> {
        let thing_name = device.thing;
        let key_err = |e: rcgen::Error| CloudError::Key {
            thing: thing_name.to_owned(),
            reason: e.to_string(),
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(key_err)?;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, device.common_name);
        let csr = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(key_err)?;
        let registry = self.registry();
        registry.set_now_ms(now_ms());
        let issued = i64::from(device.issued_days_ago) * DAY_MS;
        let reg_err = |what: &str| {
            let what = format!("{what} for {thing_name}");
            move |source| CloudError::Registry { what, source }
        };
        let created = registry
            .issue_certificate_issued_ago(
                &csr,
                true,
                issued,
                issued + i64::from(device.validity_days) * DAY_MS,
            )
            .map_err(reg_err("issuing the certificate"))?;
        let arn = &created.certificate_arn;
        for policy in device.policies {
            registry
                .attach_policy(policy, arn)
                .await
                .map_err(reg_err("attaching a policy"))?;
        }
        for thing in std::iter::once(&thing_name).chain(device.other_things) {
            registry.add_thing(thing);
            registry
                .attach_thing_principal(thing, arn)
                .await
                .map_err(reg_err("attaching a thing"))?;
        }
        Ok(DeviceCredentials {
            thing_name: thing_name.to_owned(),
            certificate_id: created.certificate_id,
            certificate_pem: created.certificate_pem,
            private_key_pem: key.serialize_pem(),
        })
    }

    /// Registers a certificate the caller made (e.g. with openssl) from a
    /// CSR: issued by the registry's root CA for `validity_days`, ACTIVE,
    /// attached to the thing (created) and the device policy.
    ///
    /// # Errors
    /// [`CloudError::Registry`] when the CSR is not accepted.
    pub async fn register_csr(
        &self,
        thing_name: &str,
        csr_pem: &str,
        validity_days: u32,
    ) -> Result<DeviceCredentials, CloudError> {
        let registry = self.registry();
        registry.set_now_ms(now_ms());
        let created = registry
            .issue_certificate(csr_pem, true, i64::from(validity_days) * DAY_MS)
            .map_err(|source| CloudError::Registry {
                what: format!("issuing the certificate for {thing_name}"),
                source,
            })?;
        self.provision_certificate(thing_name, &created.certificate_arn)
            .await?;
        Ok(DeviceCredentials {
            thing_name: thing_name.to_owned(),
            certificate_id: created.certificate_id,
            certificate_pem: created.certificate_pem,
            private_key_pem: String::new(),
        })
    }

    async fn provision_certificate(&self, thing_name: &str, arn: &str) -> Result<(), CloudError> {
        let registry = self.registry();
        let reg_err = |what: &str| {
            let what = format!("{what} for {thing_name}");
            move |source| CloudError::Registry { what, source }
        };
        registry.add_thing(thing_name);
        registry
            .attach_policy(&self.device_policy, arn)
            .await
            .map_err(reg_err("attaching the device policy"))?;
        registry
            .attach_thing_principal(thing_name, arn)
            .await
            .map_err(reg_err("attaching the thing"))?;
        Ok(())
    }

    /// Registers a CA certificate for JITR (ACTIVE, auto-registration on);
    /// returns its id. The deployment must have been synthesized with it
    /// for its registration events to reach the JITR activator.
    ///
    /// # Errors
    /// [`CloudError::Registry`] when `pem` is not a certificate.
    pub fn register_ca(&self, pem: &str) -> Result<String, CloudError> {
        self.registry()
            .register_ca_certificate(pem)
            .map(|h| h.ca_certificate_id)
            .map_err(|source| CloudError::Registry {
                what: "registering the ca certificate".to_owned(),
                source,
            })
    }

    /// Serves AWS IoT's API (and iot-data `Publish`) on `options.bind`
    /// ([`crate::api`]): the operator's access to this cloud's registry,
    /// broker and audit. It serves until the returned server is dropped.
    ///
    /// # Errors
    /// [`CloudError::Emulator`] when it cannot listen.
    pub async fn serve_api(&self, options: ApiOptions) -> Result<ApiServer, CloudError> {
        let bind = options.bind;
        crate::api::serve(
            self.registry().clone(),
            self.emulator.clone(),
            self.lambda.clone(),
            options,
        )
        .await
        .map_err(|source| {
            CloudError::Emulator(EmulatorError::Io {
                what: format!("cannot listen on {bind}"),
                source,
            })
        })
    }

    /// Enforces `deployment` from now on in the broker and the Lambda
    /// service (a stack update), creating its policies in the registry.
    pub fn redeploy(&self, deployment: Deployment) {
        for name in deployment.policy_names() {
            self.registry().create_policy(name);
        }
        self.emulator.redeploy(deployment.clone());
        self.lambda.redeploy(deployment);
    }

    /// Runs an emulated Device Defender audit: every ACTIVE certificate
    /// expiring within `threshold_days` (or expired) becomes a finding of
    /// [`EXPIRING_CHECK`] that `ListAuditFindings` returns, and the SNS
    /// audit notification goes to audit-fanout, which queues the rotations.
    ///
    /// # Errors
    /// As [`run_audit`].
    pub async fn audit_now(&self, threshold_days: u32) -> Result<AuditReport, CloudError> {
        let seq = self.audit_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.audits.fetch_add(1, Ordering::Relaxed);
        run_audit(&self.lambda, &format!("manual-{seq}"), threshold_days).await
    }

    /// Runs the sweeper once (open rotations past their deadline expire).
    ///
    /// # Errors
    /// [`CloudError::Invoke`] when the sweeper is not invoked or fails.
    pub async fn sweep_now(&self) -> Result<String, CloudError> {
        run_sweep(&self.lambda).await
    }

    /// The emulated Lambda service: its access log (every IAM denial),
    /// dead letters, rule errors and clock.
    pub fn lambda(&self) -> &LambdaService {
        &self.lambda
    }

    /// Every support notification (SNS) so far, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.ports.ports.notifier.sent()
    }

    /// Rotation work messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.ports.ports.queue.len()
    }

    /// Handler counters.
    pub fn stats(&self) -> CloudStats {
        let c = self.lambda.counters();
        CloudStats {
            invocations: c.invocations.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            audits: self.audits.load(Ordering::Relaxed),
        }
    }

    /// Stops the background tasks and closes every connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.emulator.close_all_connections();
    }
}

/// The error code Device Defender gives a check its role may not run.
pub const INSUFFICIENT_PERMISSIONS: &str = "INSUFFICIENT_PERMISSIONS";

/// The emulated Device Defender audit of [`EXPIRING_CHECK`], run as AWS IoT
/// runs it: with the audit role of the template's
/// `AWS::IoT::AccountAuditConfiguration` (the check lists the device
/// certificates, `iot:ListCertificates` on `*`, and describes each,
/// `iot:DescribeCertificate`); a role that may not do so fails the check
/// (`FAILED`, `INSUFFICIENT_PERMISSIONS`) instead of finding anything. The
/// notification is then published with the notification target's role and
/// delivered to the topic's Lambda subscribers.
///
/// # Errors
/// [`CloudError::Audit`] when the template deploys no audit (or not this
/// check), [`CloudError::Invoke`] when the notified function fails.
pub async fn run_audit(
    lambda: &LambdaService,
    task_suffix: &str,
    threshold_days: u32,
) -> Result<AuditReport, CloudError> {
    let deployment = lambda.deployment();
    let failed = |reason: String| CloudError::Audit { reason };
    let config =
        deployment.wiring().audit.clone().ok_or_else(|| {
            failed("the template has no AWS::IoT::AccountAuditConfiguration".into())
        })?;
    if !config.expiring_check_enabled {
        return Err(failed(format!(
            "{EXPIRING_CHECK} is not enabled in the audit configuration"
        )));
    }
    let auditor = lambda
        .role_principal(&config.role, "device-defender-audit")
        .ok_or_else(|| {
            failed(format!(
                "the audit role {} is not in the template",
                config.role
            ))
        })?;
    let registry = &lambda.ports().ports.registry;
    let now = lambda.now_ms();
    registry.set_now_ms(now);
    let horizon = now.saturating_add(i64::from(threshold_days) * DAY_MS);
    let task_id = format!("emulated-audit-{task_suffix}-{now}");
    let certs = registry.certificates();
    let scope = deployment.scope();
    let mut denied = auditor.authorize("iot:ListCertificates", &[]).err();
    if denied.is_none() {
        denied = certs.iter().find_map(|c| {
            auditor
                .authorize(
                    "iot:DescribeCertificate",
                    &[(
                        "cert",
                        format!(
                            "arn:{}:iot:{}:{}:cert/{}",
                            scope.partition, scope.region, scope.account, c.certificate_id
                        ),
                    )],
                )
                .err()
        });
    }
    let total = certs.len();
    let finding =
        |check: &str, c: &lambdas::memory::CertificateSnapshot, reason: &str, info: Value| {
            let mut resource = json!({
                "resourceType": "DEVICE_CERTIFICATE",
                "resourceIdentifier": {"deviceCertificateId": c.certificate_id},
            });
            if !info.is_null() {
                resource["additionalInfo"] = info;
            }
            serde_json::from_value::<AuditFinding>(json!({
                "findingId": format!("f-{}-{}-{}", &task_id, check, &c.certificate_id[..16]),
                "taskId": task_id,
                "checkName": check,
                "nonCompliantResource": resource,
                "reasonForNonComplianceCode": reason,
                "severity": if check == AGE_CHECK { "LOW" } else { "MEDIUM" }
            }))
            .ok()
        };
    // Each enabled check: the expiry check, and the age check when the
    // template enables it ("active for a number of days greater than or
    // equal to" its threshold; ACTIVE certificates, by their notBefore).
    let mut checks: Vec<(&str, Vec<AuditFinding>)> = Vec::new();
    let expiring = certs
        .iter()
        .filter(|c| c.status == CertificateStatus::Active && c.not_after_ms <= horizon)
        .filter_map(|c| {
            let past = c.not_after_ms <= now;
            finding(
                EXPIRING_CHECK,
                c,
                if past {
                    "CERTIFICATE_PAST_EXPIRATION"
                } else {
                    "CERTIFICATE_APPROACHING_EXPIRATION"
                },
                json!({"EXPIRATION_TIME": c.not_after_ms.to_string()}),
            )
        })
        .collect();
    checks.push((EXPIRING_CHECK, expiring));
    if let Some(days) = config.age_threshold_days {
        let born_before = now.saturating_sub(i64::from(days) * DAY_MS);
        let aged = certs
            .iter()
            .filter(|c| c.status == CertificateStatus::Active && c.not_before_ms <= born_before)
            .filter_map(|c| {
                finding(
                    AGE_CHECK,
                    c,
                    "CERTIFICATE_PAST_AGE_THRESHOLD",
                    // AWS documents no additionalInfo for this check
                    Value::Null,
                )
            })
            .collect();
        checks.push((AGE_CHECK, aged));
    }
    let mut count = 0;
    let mut details = Vec::new();
    for (check, findings) in checks {
        let found = if denied.is_some() { 0 } else { findings.len() };
        count += found;
        if denied.is_none() {
            registry.set_audit_findings(&task_id, check, findings);
        }
        details.push(match &denied {
            Some(d) => json!({
                "checkName": check,
                "checkRunStatus": "FAILED",
                "nonCompliantResourcesCount": 0,
                "totalResourcesCount": 0,
                "errorCode": INSUFFICIENT_PERMISSIONS,
                "message": format!("the audit role may not {} on {}", d.action, d.resource)
            }),
            None => json!({
                "checkName": check,
                "checkRunStatus": if found > 0 { "COMPLETED_NON_COMPLIANT" } else { "COMPLETED_COMPLIANT" },
                "nonCompliantResourcesCount": found,
                "totalResourcesCount": total
            }),
        });
    }
    let non_compliant = details
        .iter()
        .filter(|d| d["checkRunStatus"] == "COMPLETED_NON_COMPLIANT")
        .count();
    let failed_checks = if denied.is_some() { details.len() } else { 0 };
    let message = json!({
        "accountId": scope.account,
        "taskId": task_id,
        "taskStatus": "COMPLETED",
        "taskType": "ON_DEMAND_AUDIT_TASK",
        "failedChecksCount": failed_checks,
        "canceledChecksCount": 0,
        "nonCompliantChecksCount": non_compliant,
        "compliantChecksCount": details.len() - non_compliant - failed_checks,
        "totalChecksCount": details.len(),
        "taskStartTime": now,
        "auditDetails": details
    });
    let report = |outcome: String| AuditReport {
        task_id: task_id.clone(),
        findings: count,
        outcome,
    };
    let Some((notify_role, topic)) = config.notification.clone() else {
        return Ok(report("no notification target is enabled".into()));
    };
    let notifier = lambda
        .role_principal(&notify_role, "device-defender-audit-notification")
        .ok_or_else(|| {
            failed(format!(
                "the notification role {notify_role} is not in the template"
            ))
        })?;
    if let Err(d) = notifier.authorize("sns:Publish", &[("topic", topic.clone())]) {
        return Ok(report(format!("notification not published: {d}")));
    }
    if let Err(d) = lambda
        .kms()
        .authorize_publish(Caller::Role(&notifier), &topic)
    {
        return Ok(report(format!("notification not published: {d}")));
    }
    let event = json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:emulator"),
        "Sns": {
            "Type": "Notification",
            "MessageId": task_id,
            "TopicArn": topic,
            "Subject": null,
            "Message": message.to_string(),
            "Timestamp": "1970-01-01T00:00:00.000Z"
        }
    }]});
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    let subscribers: Vec<Function> = deployment
        .wiring()
        .subscriptions
        .iter()
        .filter(|(t, _)| *t == topic)
        .map(|(_, f)| *f)
        .collect();
    if subscribers.is_empty() {
        return Ok(report(format!("no lambda subscribes to {topic}")));
    }
    let mut outcomes = Vec::new();
    for f in subscribers {
        let invoked = lambda
            .invoke(&Trigger::Sns(topic.clone()), f, payload.clone())
            .await?;
        outcomes.push(describe(&invoked.outcome));
    }
    Ok(report(outcomes.join("; ")))
}

/// What CloudWatch did with one alarm's state change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmNotification {
    /// The topics that took the notification.
    pub delivered: Vec<String>,
    /// The topics SNS refused it for, with the reason.
    pub refused: Vec<String>,
}

/// CloudWatch notifying the state change of the alarm `logical_id` to
/// `state` (`ALARM`, `OK`) as AWS does: a publish to each topic of its
/// actions as `cloudwatch.amazonaws.com` for the alarm (`aws:SourceArn`
/// the alarm's ARN, `aws:SourceAccount` the account), through the topic's
/// key ([`crate::kms`]). A refused publish loses the notification (on AWS
/// the alarm history records the failure and the alarm still changes
/// state); one the support topic takes reaches support's notifications.
///
/// # Errors
/// [`CloudError::Alarm`] when the template has no such alarm.
pub async fn run_alarm(
    lambda: &LambdaService,
    logical_id: &str,
    state: &str,
) -> Result<AlarmNotification, CloudError> {
    let deployment = lambda.deployment();
    let alarm = deployment
        .wiring()
        .alarms
        .iter()
        .find(|a| a.logical_id == logical_id)
        .cloned()
        .ok_or_else(|| CloudError::Alarm {
            reason: format!("no alarm {logical_id} in the template"),
        })?;
    let support_topics: Vec<&String> = deployment
        .wiring()
        .functions
        .values()
        .filter_map(|f| f.environment.get("SUPPORT_TOPIC_ARN"))
        .collect();
    let mut out = AlarmNotification::default();
    for topic in &alarm.actions {
        let caller = Caller::Service {
            service: "cloudwatch.amazonaws.com",
            source_arn: &alarm.arn,
        };
        if let Err(d) = lambda.kms().authorize_publish(caller, topic) {
            tracing::warn!(alarm = %alarm.name, %topic, denial = %d, "alarm notification lost");
            out.refused.push(format!("{topic}: {d}"));
            continue;
        }
        if support_topics.contains(&topic) {
            let subject = format!("{state}: \"{}\"", alarm.name);
            let message = json!({
                "AlarmName": alarm.name, "AlarmArn": alarm.arn, "NewStateValue": state,
                "AWSAccountId": deployment.scope().account, "Region": deployment.scope().region,
            })
            .to_string();
            lambda
                .ports()
                .ports
                .notifier
                .notify(&subject, &message)
                .await
                .map_err(|e| CloudError::Alarm {
                    reason: format!("the support topic took no notification: {e}"),
                })?;
        }
        out.delivered.push(topic.clone());
    }
    Ok(out)
}

/// Runs the sweeper as its EventBridge schedule does.
///
/// # Errors
/// [`CloudError::Invoke`] when it is not invoked or fails.
pub async fn run_sweep(lambda: &LambdaService) -> Result<String, CloudError> {
    let deployment = lambda.deployment();
    let scope = deployment.scope();
    let event = json!({
        "version": "0", "id": format!("sweep-{}", lambda.now_ms()), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": scope.account,
        "time": "1970-01-01T00:00:00Z", "region": scope.region,
        "resources": [], "detail": {}
    });
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    let invoked = lambda
        .invoke(&Trigger::Schedule, Function::Sweeper, payload)
        .await?;
    Ok(describe(&invoked.outcome))
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done { summary } => summary.clone(),
        Outcome::Rejected { kind, reason } => format!("rejected ({kind}): {reason}"),
    }
}

/// Closes the connections of certificates that stop being ACTIVE (or are
/// deleted).
async fn watch_status(
    emulator: Arc<Emulator>,
    rx: broadcast::Receiver<lambdas::memory::StatusChange>,
) {
    crate::broker::follow_changes(
        rx,
        |change| {
            if change.status != Some(CertificateStatus::Active) {
                // read again: the change may be stale by now
                emulator.disconnect_if_not_active(&change.certificate_id);
            }
        },
        || emulator.recheck_connections(),
    )
    .await;
}

/// The publisher port's messages into the broker (iot-data `Publish`).
async fn deliver(
    emulator: Arc<Emulator>,
    mut rx: mpsc::UnboundedReceiver<Published>,
    hook: Arc<Mutex<Option<PublishHook>>>,
) {
    while let Some(message) = rx.recv().await {
        let hook = hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let messages = match hook {
            Some(h) => h(message),
            None => vec![message],
        };
        for m in messages {
            if let Err(e) = emulator.publish_with_qos(&m.topic, m.payload, m.qos) {
                tracing::warn!(topic = %m.topic, error = %e, "publish refused");
            }
        }
    }
}

/// Feeds the work queue to rotation-starter in batches of ten, as the SQS
/// event source does (through the Lambda service, which checks the
/// mapping and the role's SQS actions), redelivering failed messages up to
/// `max_receive_count` times, and taking no more messages than leave at
/// most `max_open` rotations open.
async fn drive_queue(
    lambda: LambdaService,
    poll: Duration,
    max_receive_count: u32,
    max_open: Option<usize>,
) {
    let queue = lambda.ports().ports.queue.clone();
    let store = lambda.ports().ports.store.clone();
    let queue_arn = lambda.work_queue_arn().unwrap_or_default();
    let trigger = Trigger::Queue(queue_arn.clone());
    let mut redeliver: Vec<(QueueMessage, u32)> = Vec::new();
    let mut seq = 0u64;
    loop {
        let mut batch: Vec<(QueueMessage, u32)> = std::mem::take(&mut redeliver);
        let room = max_open.map_or(usize::MAX, |max| {
            max.saturating_sub(store.open_count() + batch.len())
        });
        batch.extend(queue.drain_up_to(room).into_iter().map(|m| (m, 0)));
        if batch.is_empty() {
            tokio::time::sleep(poll).await;
            continue;
        }
        for chunk in batch.chunks(lambdas::ports::MAX_QUEUE_BATCH) {
            let records: Vec<Value> = chunk
                .iter()
                .map(|(m, received)| {
                    seq += 1;
                    json!({
                        "messageId": format!("emu-{seq}"),
                        "receiptHandle": format!("rh-{seq}"),
                        "body": m.body,
                        "attributes": {"ApproximateReceiveCount": (received + 1).to_string()},
                        "messageAttributes": {},
                        "md5OfBody": "",
                        "eventSource": "aws:sqs",
                        "eventSourceARN": queue_arn,
                        "awsRegion": "us-east-1"
                    })
                })
                .collect();
            let ids: Vec<String> = records
                .iter()
                .map(|r| r["messageId"].as_str().unwrap_or_default().to_owned())
                .collect();
            let payload = serde_json::to_vec(&json!({"Records": records})).unwrap_or_default();
            // A refused or failed invocation leaves every message of the
            // batch in the queue, as SQS does until the visibility timeout.
            let failed: Vec<String> = match lambda
                .invoke(&trigger, Function::RotationStarter, payload)
                .await
            {
                Ok(invoked) => invoked.batch_item_failures,
                Err(_) => ids.clone(),
            };
            for failure in &failed {
                if let Some(i) = ids.iter().position(|id| id == failure) {
                    let (m, received) = &chunk[i];
                    if received + 1 < max_receive_count {
                        redeliver.push((m.clone(), received + 1));
                    } else {
                        lambda.counters().failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(body = %m.body, "rotation work dropped after {max_receive_count} receives");
                    }
                }
            }
        }
        if !redeliver.is_empty() {
            // the visibility timeout, shortened
            tokio::time::sleep(poll.max(Duration::from_millis(20))).await;
        }
    }
}

/// Logs every new support notification.
async fn log_notifications(ports: MemoryPorts) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = ports.ports.notifier.sent();
        for n in sent.iter().skip(seen) {
            tracing::info!(subject = %n.subject, message = %n.message, "support notification (sns)");
        }
        seen = sent.len();
    }
}
