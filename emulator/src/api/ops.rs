//! What each operation does to the cloud: the registry the broker and the
//! handlers share, the broker (iot-data `Publish`, the endpoint), and the
//! emulated Device Defender audit. Inputs arrive decoded and validated by
//! the model; outputs are JSON objects of the output shape's members
//! (timestamps in seconds), checked against the model before they leave.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lambdas::memory::MemoryRegistry;
use lambdas::ports::{IotRegistry, PortError, ThingPrincipalType};
use rules::status::CertificateStatus;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::model::{Input, Operation, model};
use crate::lambda::LambdaService;
use crate::{Deployment, Emulator};

/// Synthesizes the deployment for the CA certificate ids registered so
/// far (their JITR rules), as `fleetcert synth` with `[jitr]
/// ca_certificate_ids` would; the API redeploys it when a CA is
/// registered. The emulator knows no synthesizer: whoever starts the API
/// (the harness) gives one.
pub type Synthesize = Arc<dyn Fn(&[String]) -> Result<Deployment, String> + Send + Sync>;

/// How the API serves.
#[derive(Clone)]
pub struct ApiOptions {
    /// Where to listen (127.0.0.1 and a free port by default).
    pub bind: SocketAddr,
    /// Redeploys with the JITR rules of the CAs registered through the API;
    /// `None`: the deployment stays as started.
    pub synthesize: Option<Synthesize>,
    /// `StartOnDemandAuditTask`'s expiring-certificate threshold, days.
    pub audit_threshold_days: u32,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            synthesize: None,
            audit_threshold_days: 30,
        }
    }
}

impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field("bind", &self.bind)
            .field("synthesize", &self.synthesize.is_some())
            .field("audit_threshold_days", &self.audit_threshold_days)
            .finish()
    }
}

/// The API's view of the cloud.
pub(crate) struct Api {
    pub(crate) registry: MemoryRegistry,
    pub(crate) emulator: Arc<Emulator>,
    pub(crate) lambda: LambdaService,
    pub(crate) options: ApiOptions,
    /// What `DescribeAuditTask` returns, by task id.
    audits: Mutex<BTreeMap<String, Value>>,
    seq: AtomicU64,
}

fn secs(ms: i64) -> Value {
    // seconds since the epoch, as restJson1 writes timestamps
    json!(ms as f64 / 1000.0)
}

fn text<'a>(input: &'a Input, name: &str) -> Option<&'a str> {
    input.members.get(name).and_then(Value::as_str)
}

fn required<'a>(input: &'a Input, name: &str) -> Result<&'a str, ApiError> {
    text(input, name).ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

fn flag(input: &Input, name: &str) -> Option<bool> {
    input.members.get(name).and_then(Value::as_bool)
}

/// A port error as the API's error: AWS's code for what happened.
fn port(e: PortError) -> ApiError {
    match e {
        PortError::NotFound { message, .. } => ApiError::not_found(message),
        PortError::Throttled { message, .. } => {
            ApiError::new("ThrottlingException", format!("Rate exceeded: {message}"))
        }
        PortError::Transient { message, .. } => {
            ApiError::new("ServiceUnavailableException", message)
        }
        PortError::Invalid { message, .. } => ApiError::invalid(message),
        PortError::Conflict { message, .. } => {
            ApiError::new("ResourceAlreadyExistsException", message)
        }
        PortError::AccessDenied { message, .. } => ApiError::new("UnauthorizedException", message),
        other => ApiError::internal(other.to_string()),
    }
}

/// Refuses a member whose feature the emulator does not have, instead of
/// ignoring it.
fn not_emulated(input: &Input, member: &str) -> Result<(), ApiError> {
    if input.members.contains_key(member) {
        return Err(ApiError::invalid(format!(
            "{member} (just-in-time provisioning) is not emulated: the emulator does JITR only"
        )));
    }
    Ok(())
}

fn cert_id_of_arn(arn: &str) -> Result<&str, ApiError> {
    arn.rsplit_once(":cert/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{arn} is not a certificate arn (the emulator attaches to certificates only)"
            ))
        })
}

impl Api {
    pub(crate) fn new(
        registry: MemoryRegistry,
        emulator: Arc<Emulator>,
        lambda: LambdaService,
        options: ApiOptions,
    ) -> Api {
        Api {
            registry,
            emulator,
            lambda,
            options,
            audits: Mutex::default(),
            seq: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_request_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("fleetcert-emulator-{n:016x}")
    }

    fn scope(&self) -> rules::policy::ArnScope {
        self.lambda.deployment().scope().clone()
    }

    fn arn(&self, resource: &str) -> String {
        let s = self.scope();
        format!(
            "arn:{}:iot:{}:{}:{resource}",
            s.partition, s.region, s.account
        )
    }

    /// Runs `op` on `input`: the output shape's members.
    pub(crate) async fn call(&self, op: &Operation, input: Input) -> Result<Value, ApiError> {
        self.registry.set_now_ms(crate::cloud::now_ms());
        let out = match op.name.as_str() {
            "GetRegistrationCode" => json!({"registrationCode": self.registry.registration_code()}),
            "RegisterCACertificate" => self.register_ca(&input)?,
            "UpdateCACertificate" => self.update_ca(&input)?,
            "DescribeCACertificate" => self.describe_ca(&input)?,
            "ListCACertificates" => {
                let mut cas = self.registry.ca_snapshots();
                // no CA has a provisioning template (JITP is not emulated)
                if text(&input, "templateName").is_some() {
                    cas.clear();
                }
                let ascending = flag(&input, "ascendingOrder").unwrap_or(false);
                cas.sort_by(|a, b| {
                    let order = (a.created_ms, &a.description.ca_certificate_id)
                        .cmp(&(b.created_ms, &b.description.ca_certificate_id));
                    if ascending { order } else { order.reverse() }
                });
                json!({"certificates": cas.iter().map(|ca| json!({
                    "certificateId": ca.description.ca_certificate_id,
                    "certificateArn": self.arn(&format!("cacert/{}", ca.description.ca_certificate_id)),
                    "status": ca.description.status,
                    "creationDate": secs(ca.created_ms),
                })).collect::<Vec<_>>()})
            }
            "ListCertificatesByCA" => {
                let ca = required(&input, "caCertificateId")?;
                json!({"certificates": self.certificate_summaries(&input, |c| c.ca_certificate_id.as_deref() == Some(ca))})
            }
            "ListCertificates" => {
                json!({"certificates": self.certificate_summaries(&input, |_| true)})
            }
            "CreateCertificateFromCsr" => {
                let csr = required(&input, "certificateSigningRequest")?;
                let created = self
                    .registry
                    .create_certificate_from_csr(csr, flag(&input, "setAsActive").unwrap_or(false))
                    .await
                    .map_err(port)?;
                json!({
                    "certificateArn": created.certificate_arn,
                    "certificateId": created.certificate_id,
                    "certificatePem": created.certificate_pem,
                })
            }
            "CreateKeysAndCertificate" => self.create_keys_and_certificate(&input).await?,
            "RegisterCertificate" => self.register_certificate(&input).await?,
            "RegisterCertificateWithoutCA" => {
                let pem = required(&input, "certificatePem")?;
                let status = text(&input, "status")
                    .map_or(CertificateStatus::Inactive, CertificateStatus::from);
                self.check_registrable(pem)?;
                let created = self
                    .registry
                    .register_certificate_without_ca(pem, status)
                    .map_err(port)?;
                json!({"certificateArn": created.certificate_arn, "certificateId": created.certificate_id})
            }
            "DescribeCertificate" => self.describe_certificate(&input)?,
            "UpdateCertificate" => self.update_certificate(&input).await?,
            "DeleteCertificate" => self.delete_certificate(&input).await?,
            "CreateThing" => self.create_thing(&input).await?,
            "DescribeThing" => {
                let name = required(&input, "thingName")?;
                let thing = self.registry.describe_thing(name).await.map_err(port)?;
                json!({
                    "thingName": thing.thing_name,
                    "thingArn": thing.thing_arn,
                    "thingId": thing_id(name),
                    "attributes": self.registry.thing_attributes(name),
                    "version": 1,
                    "defaultClientId": name,
                })
            }
            "DeleteThing" => {
                self.registry
                    .delete_thing(required(&input, "thingName")?)
                    .map_err(port)?;
                json!({})
            }
            "ListThings" => {
                let attribute = text(&input, "attributeName");
                let value = text(&input, "attributeValue");
                let prefix = flag(&input, "usePrefixAttributeValue").unwrap_or(false);
                if value.is_some() && attribute.is_none() {
                    return Err(ApiError::invalid("attributeValue needs attributeName"));
                }
                let things: Vec<Value> = self
                    .registry
                    .thing_names()
                    .iter()
                    // no thing has a type (CreateThing refuses one)
                    .filter(|_| text(&input, "thingTypeName").is_none())
                    .map(|name| (name, self.registry.thing_attributes(name)))
                    .filter(|(_, attrs)| match (attribute, value) {
                        (None, _) => true,
                        (Some(a), None) => attrs.contains_key(a),
                        (Some(a), Some(v)) => attrs
                            .get(a)
                            .is_some_and(|x| if prefix { x.starts_with(v) } else { x == v }),
                    })
                    .map(|(name, attributes)| {
                        json!({
                            "thingName": name,
                            "thingArn": self.arn(&format!("thing/{name}")),
                            "attributes": attributes,
                            "version": 1,
                        })
                    })
                    .collect();
                json!({"things": things})
            }
            "AttachThingPrincipal" => {
                let kind = match text(&input, "thingPrincipalType") {
                    Some("EXCLUSIVE_THING") => ThingPrincipalType::Exclusive,
                    _ => ThingPrincipalType::NonExclusive,
                };
                let principal = required(&input, "principal")?;
                cert_id_of_arn(principal)?;
                self.registry
                    .attach_thing_principal_as(required(&input, "thingName")?, principal, kind)
                    .await
                    .map_err(port)?;
                json!({})
            }
            "DetachThingPrincipal" => {
                let principal = required(&input, "principal")?;
                cert_id_of_arn(principal)?;
                self.registry
                    .detach_thing_principal(required(&input, "thingName")?, principal)
                    .await
                    .map_err(port)?;
                json!({})
            }
            "ListPrincipalThings" => {
                let principal = required(&input, "principal")?;
                let id = cert_id_of_arn(principal)?;
                let cert = self.registry.certificate(id).ok_or_else(|| {
                    ApiError::not_found(format!("certificate {id} does not exist"))
                })?;
                json!({"things": cert.things.into_iter().collect::<Vec<_>>()})
            }
            "ListThingPrincipals" => {
                let name = required(&input, "thingName")?;
                if !self.registry.has_thing(name) {
                    return Err(ApiError::not_found(format!("thing {name} does not exist")));
                }
                let principals: Vec<String> = self
                    .registry
                    .certificates_of_thing(name)
                    .into_iter()
                    .map(|c| c.certificate_arn)
                    .collect();
                json!({"principals": principals})
            }
            "CreatePolicy" => {
                let name = required(&input, "policyName")?;
                let document = required(&input, "policyDocument")?;
                rules::policy::PolicyDocument::parse(document).map_err(|e| {
                    ApiError::new("MalformedPolicyException", format!("policy {name}: {e}"))
                })?;
                self.registry
                    .create_policy_with_document(name, document)
                    .map_err(|e| ApiError::new("ResourceAlreadyExistsException", e.to_string()))?;
                json!({
                    "policyName": name,
                    "policyArn": self.arn(&format!("policy/{name}")),
                    "policyDocument": document,
                    "policyVersionId": "1",
                })
            }
            "GetPolicy" => {
                let name = required(&input, "policyName")?;
                let document = self
                    .registry
                    .policy_document(name)
                    .ok_or_else(|| ApiError::not_found(format!("policy {name} does not exist")))?;
                let document = if document.is_empty() {
                    self.lambda
                        .deployment()
                        .policy_json(name)
                        .unwrap_or_default()
                } else {
                    document
                };
                json!({
                    "policyName": name,
                    "policyArn": self.arn(&format!("policy/{name}")),
                    "policyDocument": document,
                    "defaultVersionId": "1",
                })
            }
            "ListPolicies" => {
                json!({"policies": self.registry.policy_names().iter().map(|name| json!({
                "policyName": name,
                "policyArn": self.arn(&format!("policy/{name}")),
            })).collect::<Vec<_>>()})
            }
            "AttachPolicy" => {
                let target = required(&input, "target")?;
                cert_id_of_arn(target)?;
                self.registry
                    .attach_policy(required(&input, "policyName")?, target)
                    .await
                    .map_err(port)?;
                json!({})
            }
            "DetachPolicy" => {
                let target = required(&input, "target")?;
                cert_id_of_arn(target)?;
                self.registry
                    .detach_policy(required(&input, "policyName")?, target)
                    .await
                    .map_err(port)?;
                json!({})
            }
            "ListAttachedPolicies" => {
                let target = required(&input, "target")?;
                let id = cert_id_of_arn(target)?;
                let cert = self.registry.certificate(id).ok_or_else(|| {
                    ApiError::not_found(format!("certificate {id} does not exist"))
                })?;
                json!({"policies": cert.policies.iter().map(|p| json!({
                    "policyName": p,
                    "policyArn": self.arn(&format!("policy/{p}")),
                })).collect::<Vec<_>>()})
            }
            "DescribeEndpoint" => {
                let broker = self.emulator.local_addr();
                json!({"endpointAddress": match text(&input, "endpointType") {
                    Some("iot:CredentialProvider" | "iot:Jobs") => self.options.bind.to_string(),
                    _ => broker.to_string(),
                }})
            }
            "StartOnDemandAuditTask" => self.start_audit(&input).await?,
            "DescribeAuditTask" => {
                let id = required(&input, "taskId")?;
                self.audits
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(id)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(format!("audit task {id} does not exist")))?
            }
            "ListAuditFindings" => self.list_findings(&input).await?,
            "Publish" => {
                let topic = required(&input, "topic")?;
                if flag(&input, "retain") == Some(true) {
                    return Err(ApiError::invalid(
                        "retained messages are not emulated: publish without retain",
                    ));
                }
                let qos = input
                    .members
                    .get("qos")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let payload = input.payload.clone().unwrap_or_default();
                self.emulator
                    .publish_with_qos(topic, payload, u8::from(qos != 0))
                    .map_err(|e| ApiError::invalid(e.to_string()))?;
                json!({})
            }
            other => {
                return Err(ApiError::new(
                    super::UNKNOWN_OPERATION,
                    format!("{other} is not implemented by the fleetcert emulator"),
                ));
            }
        };
        page(op, &input, out)
    }

    /// Certificates by creation date, newest first unless
    /// `isAscendingOrder` (AWS's order), as `ListCertificates` lists them.
    fn certificate_summaries(
        &self,
        input: &Input,
        keep: impl Fn(&lambdas::memory::CertificateSnapshot) -> bool,
    ) -> Vec<Value> {
        let mut certs: Vec<_> = self
            .registry
            .certificates()
            .into_iter()
            .filter(|c| keep(c))
            .collect();
        let ascending = flag(input, "ascendingOrder").unwrap_or(false);
        certs.sort_by(|a, b| {
            let order = (a.created_ms, &a.certificate_id).cmp(&(b.created_ms, &b.certificate_id));
            if ascending { order } else { order.reverse() }
        });
        certs
            .into_iter()
            .map(|c| {
                json!({
                    "certificateId": c.certificate_id,
                    "certificateArn": c.certificate_arn,
                    "status": c.status.as_str(),
                    "certificateMode": "DEFAULT",
                    "creationDate": secs(c.created_ms),
                })
            })
            .collect()
    }

    fn register_ca(&self, input: &Input) -> Result<Value, ApiError> {
        let pem = required(input, "caCertificate")?;
        not_emulated(input, "registrationConfig")?;
        let info = rules::csr::inspect_certificate(pem).map_err(|e| {
            ApiError::new(
                "CertificateValidationException",
                format!("caCertificate: {e}"),
            )
        })?;
        let now = crate::cloud::now_ms();
        if i64::try_from(info.not_after_ms).unwrap_or(i64::MAX) <= now {
            return Err(ApiError::new(
                "CertificateValidationException",
                "the CA certificate has expired",
            ));
        }
        let sni_only = text(input, "certificateMode") == Some("SNI_ONLY");
        match text(input, "verificationCertificate") {
            Some(verification) if !sni_only => {
                let v = rules::csr::inspect_certificate(verification).map_err(|e| {
                    ApiError::new(
                        "CertificateValidationException",
                        format!("verificationCertificate: {e}"),
                    )
                })?;
                let code = self.registry.registration_code();
                if v.subject_cn.as_deref() != Some(code.as_str()) {
                    return Err(ApiError::new(
                        "RegistrationCodeValidationException",
                        format!(
                            "the verification certificate's CN is {:?}, not the registration code {code}",
                            v.subject_cn.unwrap_or_default()
                        ),
                    ));
                }
                rules::csr::verify_issued_by(verification, pem).map_err(|e| {
                    ApiError::new(
                        "CertificateValidationException",
                        format!("the verification certificate is not signed by the CA: {e}"),
                    )
                })?;
            }
            Some(_) => {}
            None if sni_only => {}
            None => {
                return Err(ApiError::invalid(
                    "a verificationCertificate is required unless certificateMode is SNI_ONLY",
                ));
            }
        }
        let handle = self
            .registry
            .register_ca_certificate_as(
                pem,
                flag(input, "setAsActive").unwrap_or(false),
                flag(input, "allowAutoRegistration").unwrap_or(false),
            )
            .map_err(|e| match e {
                PortError::Conflict { message, .. } => {
                    let mut err = ApiError::new("ResourceAlreadyExistsException", message);
                    err.fields.insert(
                        "resourceId".into(),
                        Value::String(info.certificate_id.clone()),
                    );
                    err
                }
                other => port(other),
            })?;
        self.redeploy();
        let id = handle.ca_certificate_id;
        Ok(json!({"certificateId": id, "certificateArn": self.arn(&format!("cacert/{id}"))}))
    }

    /// Redeploys with every registered CA's JITR rule, as an operator
    /// would after registering a CA (`[jitr] ca_certificate_ids`).
    fn redeploy(&self) {
        let Some(synthesize) = &self.options.synthesize else {
            return;
        };
        let ids: Vec<String> = self
            .registry
            .ca_snapshots()
            .into_iter()
            .map(|c| c.description.ca_certificate_id)
            .collect();
        match synthesize(&ids) {
            Ok(deployment) => {
                for name in deployment.policy_names() {
                    self.registry.create_policy(name);
                }
                self.emulator.redeploy(deployment.clone());
                self.lambda.redeploy(deployment);
                tracing::info!(
                    cas = ids.len(),
                    "redeployed with the JITR rules of the registered CAs"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot redeploy with the registered CAs' JITR rules")
            }
        }
    }

    fn update_ca(&self, input: &Input) -> Result<Value, ApiError> {
        let id = required(input, "certificateId")?;
        let ca = self
            .registry
            .ca_certificate(id)
            .ok_or_else(|| ApiError::not_found(format!("ca certificate {id} does not exist")))?;
        not_emulated(input, "registrationConfig")?;
        let status = text(input, "newStatus").unwrap_or(&ca.description.status);
        let auto = if flag(input, "removeAutoRegistration") == Some(true) {
            "DISABLE"
        } else {
            text(input, "newAutoRegistrationStatus")
                .unwrap_or(&ca.description.auto_registration_status)
        };
        self.registry.set_ca_status(id, status, auto);
        Ok(json!({}))
    }

    fn describe_ca(&self, input: &Input) -> Result<Value, ApiError> {
        let id = required(input, "certificateId")?;
        let ca = self
            .registry
            .ca_certificate(id)
            .ok_or_else(|| ApiError::not_found(format!("ca certificate {id} does not exist")))?;
        let info = rules::csr::inspect_certificate(&ca.description.certificate_pem).ok();
        let scope = self.scope();
        Ok(json!({"certificateDescription": {
            "certificateId": id,
            "certificateArn": self.arn(&format!("cacert/{id}")),
            "status": ca.description.status,
            "autoRegistrationStatus": ca.description.auto_registration_status,
            "certificatePem": ca.description.certificate_pem,
            "ownedBy": scope.account,
            "creationDate": secs(ca.created_ms),
            "lastModifiedDate": secs(ca.modified_ms),
            "customerVersion": 1,
            "generationId": format!("{:x}", ca.modified_ms),
            "certificateMode": "DEFAULT",
            "validity": info.map(|i| json!({
                "notBefore": secs(i64::try_from(i.not_before_ms).unwrap_or(0)),
                "notAfter": secs(i64::try_from(i.not_after_ms).unwrap_or(i64::MAX)),
            })),
        }}))
    }

    fn describe_certificate(&self, input: &Input) -> Result<Value, ApiError> {
        let id = required(input, "certificateId")?;
        let c = self
            .registry
            .certificate(id)
            .ok_or_else(|| ApiError::not_found(format!("certificate {id} does not exist")))?;
        let scope = self.scope();
        Ok(json!({"certificateDescription": {
            "certificateId": c.certificate_id,
            "certificateArn": c.certificate_arn,
            "caCertificateId": c.ca_certificate_id,
            "status": c.status.as_str(),
            "certificatePem": c.certificate_pem,
            "ownedBy": scope.account,
            "creationDate": secs(c.created_ms),
            "lastModifiedDate": secs(c.created_ms),
            "customerVersion": 1,
            "generationId": "1",
            "certificateMode": "DEFAULT",
            "validity": {"notBefore": secs(c.not_before_ms), "notAfter": secs(c.not_after_ms)},
        }}))
    }

    async fn create_keys_and_certificate(&self, input: &Input) -> Result<Value, ApiError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| ApiError::internal(format!("generating a key: {e}")))?;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "AWS IoT Certificate");
        let csr = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| ApiError::internal(format!("making a csr: {e}")))?;
        let created = self
            .registry
            .create_certificate_from_csr(&csr, flag(input, "setAsActive").unwrap_or(false))
            .await
            .map_err(port)?;
        Ok(json!({
            "certificateArn": created.certificate_arn,
            "certificateId": created.certificate_id,
            "certificatePem": created.certificate_pem,
            "keyPair": {"PublicKey": key.public_key_pem(), "PrivateKey": key.serialize_pem()},
        }))
    }

    fn check_registrable(&self, pem: &str) -> Result<rules::csr::CertificateInfo, ApiError> {
        let info = rules::csr::inspect_certificate(pem).map_err(|e| {
            ApiError::new(
                "CertificateValidationException",
                format!("certificatePem: {e}"),
            )
        })?;
        if self.registry.certificate(&info.certificate_id).is_some() {
            let mut err = ApiError::new(
                "ResourceAlreadyExistsException",
                format!("certificate {} is already registered", info.certificate_id),
            );
            err.fields.insert(
                "resourceId".into(),
                Value::String(info.certificate_id.clone()),
            );
            return Err(err);
        }
        Ok(info)
    }

    async fn register_certificate(&self, input: &Input) -> Result<Value, ApiError> {
        let pem = required(input, "certificatePem")?;
        self.check_registrable(pem)?;
        let ca_pem = match text(input, "caCertificatePem") {
            Some(ca) => ca.to_owned(),
            // without the CA: the registered CA that signed it
            None => self
                .registry
                .ca_snapshots()
                .into_iter()
                .find(|ca| {
                    rules::csr::verify_issued_by(pem, &ca.description.certificate_pem).is_ok()
                })
                .map(|ca| ca.description.certificate_pem)
                .ok_or_else(|| {
                    ApiError::new(
                        "CertificateValidationException",
                        "no registered CA certificate signed it",
                    )
                })?,
        };
        let ca_id = rules::csr::certificate_id(&ca_pem).map_err(|e| {
            ApiError::new(
                "CertificateValidationException",
                format!("caCertificatePem: {e}"),
            )
        })?;
        match self.registry.ca_certificate(&ca_id) {
            None => {
                return Err(ApiError::not_found(format!(
                    "ca certificate {ca_id} is not registered"
                )));
            }
            Some(ca) if ca.description.status != "ACTIVE" => {
                return Err(ApiError::new(
                    "CertificateStateException",
                    format!("ca certificate {ca_id} is not ACTIVE"),
                ));
            }
            Some(_) => {}
        }
        rules::csr::verify_issued_by(pem, &ca_pem).map_err(|e| {
            ApiError::new(
                "CertificateValidationException",
                format!("the certificate is not signed by ca {ca_id}: {e}"),
            )
        })?;
        let status = match (text(input, "status"), flag(input, "setAsActive")) {
            (Some(s), _) => CertificateStatus::from(s),
            (None, Some(true)) => CertificateStatus::Active,
            _ => CertificateStatus::Inactive,
        };
        let created = self
            .registry
            .register_certificate(pem, &ca_pem, status)
            .await
            .map_err(port)?;
        Ok(
            json!({"certificateArn": created.certificate_arn, "certificateId": created.certificate_id}),
        )
    }

    async fn update_certificate(&self, input: &Input) -> Result<Value, ApiError> {
        let id = required(input, "certificateId")?;
        let status = CertificateStatus::from(required(input, "newStatus")?);
        let current = self
            .registry
            .status(id)
            .ok_or_else(|| ApiError::not_found(format!("certificate {id} does not exist")))?;
        if current == CertificateStatus::Revoked && status != CertificateStatus::Revoked {
            return Err(ApiError::new(
                "CertificateStateException",
                format!("certificate {id} is REVOKED and cannot become {status}"),
            ));
        }
        if !matches!(
            status,
            CertificateStatus::Active | CertificateStatus::Inactive | CertificateStatus::Revoked
        ) {
            return Err(ApiError::invalid(format!(
                "the emulator sets ACTIVE, INACTIVE or REVOKED, not {status}"
            )));
        }
        // the registry tells the broker, which closes the certificate's
        // connections when it is no longer ACTIVE
        self.registry
            .update_certificate(id, status)
            .await
            .map_err(|e| match e {
                PortError::Conflict { message, .. } => {
                    ApiError::new("CertificateStateException", message)
                }
                other => port(other),
            })?;
        Ok(json!({}))
    }

    async fn delete_certificate(&self, input: &Input) -> Result<Value, ApiError> {
        let id = required(input, "certificateId")?;
        let c = self
            .registry
            .certificate(id)
            .ok_or_else(|| ApiError::not_found(format!("certificate {id} does not exist")))?;
        if c.status == CertificateStatus::Active {
            return Err(ApiError::new(
                "CertificateStateException",
                format!("certificate {id} is ACTIVE: deactivate it before deleting it"),
            ));
        }
        if !c.things.is_empty()
            || (!c.policies.is_empty() && flag(input, "forceDelete") != Some(true))
        {
            return Err(ApiError::new(
                "DeleteConflictException",
                format!(
                    "certificate {id} is attached to {} things and {} policies",
                    c.things.len(),
                    c.policies.len()
                ),
            ));
        }
        for p in &c.policies {
            self.registry
                .detach_policy(p, &c.certificate_arn)
                .await
                .map_err(port)?;
        }
        self.registry
            .delete_certificate(id)
            .await
            .map_err(|e| match e {
                PortError::Conflict { message, .. } => {
                    ApiError::new("DeleteConflictException", message)
                }
                other => port(other),
            })?;
        Ok(json!({}))
    }

    async fn create_thing(&self, input: &Input) -> Result<Value, ApiError> {
        let name = required(input, "thingName")?;
        // the emulated account has no thing types and no billing groups
        if let Some(t) = text(input, "thingTypeName") {
            return Err(ApiError::not_found(format!(
                "thing type {t} does not exist"
            )));
        }
        if let Some(g) = text(input, "billingGroupName") {
            return Err(ApiError::not_found(format!(
                "billing group {g} does not exist"
            )));
        }
        let attributes: BTreeMap<String, String> = input
            .members
            .get("attributePayload")
            .and_then(|p| p.get("attributes"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        if self.registry.has_thing(name) && self.registry.thing_attributes(name) != attributes {
            return Err(ApiError::new(
                "ResourceAlreadyExistsException",
                format!("thing {name} exists with other attributes"),
            ));
        }
        let thing = self.registry.create_thing(name).await.map_err(port)?;
        self.registry.set_thing_attributes(name, attributes);
        Ok(
            json!({"thingName": thing.thing_name, "thingArn": thing.thing_arn, "thingId": thing_id(name)}),
        )
    }

    async fn start_audit(&self, input: &Input) -> Result<Value, ApiError> {
        let checks: Vec<&str> = input
            .members
            .get("targetCheckNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let deployment = self.lambda.deployment();
        let audit = deployment
            .wiring()
            .audit
            .clone()
            .ok_or_else(|| ApiError::invalid("the account has no audit configuration"))?;
        let mut enabled = Vec::new();
        if audit.expiring_check_enabled {
            enabled.push(crate::cloud::EXPIRING_CHECK);
        }
        if audit.age_threshold_days.is_some() {
            enabled.push(crate::cloud::AGE_CHECK);
        }
        if let Some(off) = checks.iter().find(|c| !enabled.contains(c)) {
            return Err(ApiError::invalid(format!(
                "check {off} is not enabled in the account's audit configuration (enabled: {})",
                enabled.join(", ")
            )));
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let started = crate::cloud::now_ms();
        let report = crate::cloud::run_audit(
            &self.lambda,
            &format!("api-{seq}"),
            self.options.audit_threshold_days,
        )
        .await
        .map_err(|e| ApiError::invalid(e.to_string()))?;
        let total = self.registry.certificates().len();
        let mut details = Map::new();
        let mut non_compliant_checks = 0;
        for check in &enabled {
            let found = self
                .registry
                .list_audit_findings(&report.task_id, check, None)
                .await
                .map(|p| p.items.len())
                .unwrap_or(0);
            if found > 0 {
                non_compliant_checks += 1;
            }
            details.insert(
                (*check).to_owned(),
                json!({
                    "checkRunStatus": if found > 0 { "COMPLETED_NON_COMPLIANT" } else { "COMPLETED_COMPLIANT" },
                    "checkCompliant": found == 0,
                    "totalResourcesCount": total,
                    "nonCompliantResourcesCount": found,
                }),
            );
        }
        let described = json!({
            "taskStatus": "COMPLETED",
            "taskType": "ON_DEMAND_AUDIT_TASK",
            "taskStartTime": secs(started),
            "taskStatistics": {
                "totalChecks": enabled.len(),
                "inProgressChecks": 0,
                "waitingForDataCollectionChecks": 0,
                "compliantChecks": enabled.len() - non_compliant_checks,
                "nonCompliantChecks": non_compliant_checks,
                "failedChecks": 0,
                "canceledChecks": 0,
            },
            "auditDetails": details,
        });
        self.audits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(report.task_id.clone(), described);
        Ok(json!({"taskId": report.task_id}))
    }

    async fn list_findings(&self, input: &Input) -> Result<Value, ApiError> {
        let Some(task) = text(input, "taskId") else {
            return Err(ApiError::invalid(
                "the emulator lists the findings of one audit task: give taskId",
            ));
        };
        let checks: Vec<String> = match text(input, "checkName") {
            Some(c) => vec![c.to_owned()],
            None => vec![
                crate::cloud::EXPIRING_CHECK.to_owned(),
                crate::cloud::AGE_CHECK.to_owned(),
            ],
        };
        let mut findings = Vec::new();
        for check in &checks {
            let mut token = None;
            loop {
                let page = self
                    .registry
                    .list_audit_findings(task, check, token)
                    .await
                    .map_err(port)?;
                findings.extend(page.items);
                token = page.next_token;
                if token.is_none() {
                    break;
                }
            }
        }
        let findings: Vec<Value> = findings
            .iter()
            .map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
            .collect();
        Ok(json!({"findings": findings}))
    }
}

/// AWS's `thingId` is a UUID; the emulator derives one from the name.
fn thing_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Pages a listing's full result as its paginator says: the page size
/// from the limit key (at most the model's maximum; 25 by default, AWS's
/// usual), the position from the input token, the next token out.
fn page(op: &Operation, input: &Input, mut out: Value) -> Result<Value, ApiError> {
    let Some(pager) = model().pager(op) else {
        return Ok(out);
    };
    let size = pager
        .limit_key
        .as_ref()
        .and_then(|k| input.members.get(k))
        .and_then(Value::as_u64)
        .map_or(25, |n| usize::try_from(n).unwrap_or(usize::MAX))
        .clamp(1, pager.max);
    let start = match text(input, &pager.input_token) {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| {
            ApiError::invalid(format!(
                "{}: {t:?} is not a token of this listing",
                pager.input_token
            ))
        })?,
    };
    let Some(Value::Array(items)) = out.get_mut(&pager.result_key).map(std::mem::take) else {
        return Ok(out);
    };
    let end = start.saturating_add(size).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    out[&pager.result_key] = Value::Array(page);
    if end < items.len() {
        out[&pager.output_token] = Value::String(end.to_string());
    }
    Ok(out)
}
