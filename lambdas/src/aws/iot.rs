//! [`AwsRegistry`]: the IoT registry port over `aws-sdk-iot`.
//!
//! Each method is one API call (IAM action `iot:<OperationName>`); listings
//! return one page and pass AWS's marker / next token through as
//! [`Page::next_token`].

use aws_sdk_iot::Client;
use aws_sdk_iot::types::CertificateStatus as SdkCertificateStatus;
use aws_sdk_iot::types::ThingPrincipalType as SdkThingPrincipalType;
use rules::contracts::{
    AdditionalInfo, AuditFinding, CertificateId, CheckName, MillisString, NonCompliantResource,
    ReasonCode, ResourceIdentifier,
};

use super::error::{classify, unexpected};
use crate::ports::{
    CaCertificateDescription, CertificateDescription, CertificateStatus, CreatedCertificate,
    IotRegistry, Operation, Page, PortResult, PrincipalThing, ThingDescription, ThingPrincipalType,
};

/// Page size of `ListAuditFindings` (AWS's maximum).
const AUDIT_PAGE: i32 = 250;

/// The IoT registry and Device Defender findings over the AWS SDK.
#[derive(Debug, Clone)]
pub struct AwsRegistry {
    client: Client,
    page_size: Option<i32>,
}

impl AwsRegistry {
    /// A registry calling AWS through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            page_size: None,
        }
    }

    /// Asks for at most `page_size` items per page of
    /// `ListAttachedPolicies`, `ListPrincipalThings` and (up to 250)
    /// `ListAuditFindings`; without it AWS's defaults apply (250 findings).
    #[must_use]
    pub fn with_page_size(mut self, page_size: u16) -> Self {
        self.page_size = Some(i32::from(page_size.max(1)));
        self
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn required<'a>(op: Operation, field: &str, value: Option<&'a str>) -> PortResult<&'a str> {
    value.ok_or_else(|| unexpected(op, format_args!("no {field}")))
}

fn millis(op: Operation, field: &str, t: Option<&aws_smithy_types::DateTime>) -> PortResult<i64> {
    let t = t.ok_or_else(|| unexpected(op, format_args!("no {field}")))?;
    t.to_millis()
        .map_err(|e| unexpected(op, format_args!("{field}: {e}")))
}

impl IotRegistry for AwsRegistry {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> PortResult<CertificateDescription> {
        let op = Operation::DescribeCertificate;
        let out = self
            .client
            .describe_certificate()
            .certificate_id(certificate_id)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let d = out
            .certificate_description()
            .ok_or_else(|| unexpected(op, "no certificateDescription"))?;
        let validity = d.validity();
        Ok(CertificateDescription {
            certificate_id: required(op, "certificateId", d.certificate_id())?.to_owned(),
            certificate_arn: required(op, "certificateArn", d.certificate_arn())?.to_owned(),
            status: CertificateStatus::from(
                d.status()
                    .ok_or_else(|| unexpected(op, "no status"))?
                    .as_str(),
            ),
            certificate_pem: required(op, "certificatePem", d.certificate_pem())?.to_owned(),
            ca_certificate_id: d.ca_certificate_id().map(str::to_owned),
            not_before_ms: millis(
                op,
                "validity.notBefore",
                validity.and_then(|v| v.not_before()),
            )?,
            not_after_ms: millis(
                op,
                "validity.notAfter",
                validity.and_then(|v| v.not_after()),
            )?,
        })
    }

    async fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> PortResult<CreatedCertificate> {
        let op = Operation::CreateCertificateFromCsr;
        let out = self
            .client
            .create_certificate_from_csr()
            .certificate_signing_request(csr_pem)
            .set_as_active(set_as_active)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(CreatedCertificate {
            certificate_id: required(op, "certificateId", out.certificate_id())?.to_owned(),
            certificate_arn: required(op, "certificateArn", out.certificate_arn())?.to_owned(),
            certificate_pem: required(op, "certificatePem", out.certificate_pem())?.to_owned(),
        })
    }

    async fn register_certificate(
        &self,
        certificate_pem: &str,
        ca_certificate_pem: &str,
        status: CertificateStatus,
    ) -> PortResult<CreatedCertificate> {
        let op = Operation::RegisterCertificate;
        let out = self
            .client
            .register_certificate()
            .certificate_pem(certificate_pem)
            .ca_certificate_pem(ca_certificate_pem)
            .status(SdkCertificateStatus::from(status.as_str()))
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(CreatedCertificate {
            certificate_id: required(op, "certificateId", out.certificate_id())?.to_owned(),
            certificate_arn: required(op, "certificateArn", out.certificate_arn())?.to_owned(),
            certificate_pem: certificate_pem.to_owned(),
        })
    }

    async fn update_certificate(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
    ) -> PortResult<()> {
        let op = Operation::UpdateCertificate;
        self.client
            .update_certificate()
            .certificate_id(certificate_id)
            .new_status(SdkCertificateStatus::from(status.as_str()))
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }

    async fn delete_certificate(&self, certificate_id: &str) -> PortResult<()> {
        let op = Operation::DeleteCertificate;
        self.client
            .delete_certificate()
            .certificate_id(certificate_id)
            .force_delete(false)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }

    async fn list_attached_policies(
        &self,
        target_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let op = Operation::ListAttachedPolicies;
        let out = self
            .client
            .list_attached_policies()
            .target(target_arn)
            .recursive(false)
            .set_marker(next_token)
            .set_page_size(self.page_size)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let items = out
            .policies()
            .iter()
            .map(|p| required(op, "policyName", p.policy_name()).map(str::to_owned))
            .collect::<PortResult<_>>()?;
        Ok(Page {
            items,
            next_token: out.next_marker().map(str::to_owned),
        })
    }

    async fn attach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let op = Operation::AttachPolicy;
        self.client
            .attach_policy()
            .policy_name(policy_name)
            .target(target_arn)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }

    async fn detach_policy(&self, policy_name: &str, target_arn: &str) -> PortResult<()> {
        let op = Operation::DetachPolicy;
        self.client
            .detach_policy()
            .policy_name(policy_name)
            .target(target_arn)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<String>> {
        let op = Operation::ListPrincipalThings;
        let out = self
            .client
            .list_principal_things()
            .principal(principal_arn)
            .set_next_token(next_token)
            .set_max_results(self.page_size)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(Page {
            items: out.things().to_vec(),
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn list_principal_things_v2(
        &self,
        principal_arn: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<PrincipalThing>> {
        let op = Operation::ListPrincipalThingsV2;
        let out = self
            .client
            .list_principal_things_v2()
            .principal(principal_arn)
            .set_next_token(next_token)
            .set_max_results(self.page_size)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let items = out
            .principal_thing_objects()
            .iter()
            .map(|o| PrincipalThing {
                thing_name: o.thing_name().to_owned(),
                // absent means AWS's default (moto omits it)
                kind: match o.thing_principal_type() {
                    Some(SdkThingPrincipalType::ExclusiveThing) => ThingPrincipalType::Exclusive,
                    _ => ThingPrincipalType::NonExclusive,
                },
            })
            .collect();
        Ok(Page {
            items,
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn attach_thing_principal_as(
        &self,
        thing_name: &str,
        principal_arn: &str,
        kind: ThingPrincipalType,
    ) -> PortResult<()> {
        let op = Operation::AttachThingPrincipal;
        // AWS's default (non-exclusive) is sent as no parameter, as every
        // caller before thingPrincipalType existed sent it
        let kind = match kind {
            ThingPrincipalType::Exclusive => Some(SdkThingPrincipalType::ExclusiveThing),
            ThingPrincipalType::NonExclusive => None,
        };
        self.client
            .attach_thing_principal()
            .thing_name(thing_name)
            .principal(principal_arn)
            .set_thing_principal_type(kind)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> PortResult<()> {
        let op = Operation::DetachThingPrincipal;
        self.client
            .detach_thing_principal()
            .thing_name(thing_name)
            .principal(principal_arn)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }

    async fn describe_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let op = Operation::DescribeThing;
        let out = self
            .client
            .describe_thing()
            .thing_name(thing_name)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(ThingDescription {
            thing_name: required(op, "thingName", out.thing_name())?.to_owned(),
            thing_arn: required(op, "thingArn", out.thing_arn())?.to_owned(),
        })
    }

    async fn create_thing(&self, thing_name: &str) -> PortResult<ThingDescription> {
        let op = Operation::CreateThing;
        let out = self
            .client
            .create_thing()
            .thing_name(thing_name)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(ThingDescription {
            thing_name: required(op, "thingName", out.thing_name())?.to_owned(),
            thing_arn: required(op, "thingArn", out.thing_arn())?.to_owned(),
        })
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> PortResult<CaCertificateDescription> {
        let op = Operation::DescribeCaCertificate;
        let out = self
            .client
            .describe_ca_certificate()
            .certificate_id(ca_certificate_id)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let d = out
            .certificate_description()
            .ok_or_else(|| unexpected(op, "no certificateDescription"))?;
        Ok(CaCertificateDescription {
            ca_certificate_id: required(op, "certificateId", d.certificate_id())?.to_owned(),
            status: d
                .status()
                .ok_or_else(|| unexpected(op, "no status"))?
                .as_str()
                .to_owned(),
            // Absent means not enabled: AWS registers a CA with DISABLE
            // unless told otherwise (moto omits the field).
            auto_registration_status: d
                .auto_registration_status()
                .map_or("DISABLE", |s| s.as_str())
                .to_owned(),
            certificate_pem: required(op, "certificatePem", d.certificate_pem())?.to_owned(),
        })
    }

    async fn list_audit_findings(
        &self,
        task_id: &str,
        check_name: &str,
        next_token: Option<String>,
    ) -> PortResult<Page<AuditFinding>> {
        let op = Operation::ListAuditFindings;
        let out = self
            .client
            .list_audit_findings()
            .task_id(task_id)
            .check_name(check_name)
            .set_next_token(next_token)
            .max_results(self.page_size.map_or(AUDIT_PAGE, |n| n.min(AUDIT_PAGE)))
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        let items = out
            .findings()
            .iter()
            .map(|f| audit_finding(op, f))
            .collect::<PortResult<_>>()?;
        Ok(Page {
            items,
            next_token: out.next_token().map(str::to_owned),
        })
    }
}

/// The SDK's finding as `rules`' contract type.
pub(crate) fn audit_finding(
    op: Operation,
    f: &aws_sdk_iot::types::AuditFinding,
) -> PortResult<AuditFinding> {
    let bad = |field: &str, e: &dyn std::fmt::Display| {
        unexpected(
            op,
            format_args!("finding {:?}: {field}: {e}", f.finding_id()),
        )
    };
    let resource = f
        .non_compliant_resource()
        .ok_or_else(|| unexpected(op, "finding without nonCompliantResource"))?;
    let identifier = resource.resource_identifier();
    let device_certificate_id = identifier
        .and_then(|i| i.device_certificate_id())
        .map(CertificateId::new)
        .transpose()
        .map_err(|e| bad("deviceCertificateId", &e))?;
    let additional_info = resource
        .additional_info()
        .map(|info| -> PortResult<AdditionalInfo> {
            Ok(AdditionalInfo {
                expiration_time: info
                    .get("EXPIRATION_TIME")
                    .map(MillisString::new)
                    .transpose()
                    .map_err(|e| bad("EXPIRATION_TIME", &e))?,
            })
        })
        .transpose()?;
    Ok(AuditFinding {
        finding_id: required(op, "findingId", f.finding_id())?.to_owned(),
        task_id: required(op, "taskId", f.task_id())?.to_owned(),
        check_name: CheckName::from(required(op, "checkName", f.check_name())?),
        non_compliant_resource: NonCompliantResource {
            resource_type: resource
                .resource_type()
                .ok_or_else(|| unexpected(op, "finding without resourceType"))?
                .as_str()
                .to_owned(),
            resource_identifier: ResourceIdentifier {
                device_certificate_id,
            },
            additional_info,
        },
        reason_for_non_compliance_code: f.reason_for_non_compliance_code().map(ReasonCode::from),
        severity: f.severity().map(|s| s.as_str().to_owned()),
    })
}
