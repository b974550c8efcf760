//! [`AwsPrivateCa`]: the Private CA port over `aws-sdk-acmpca`.
//!
//! One API call per method (IAM action `acm-pca:<OperationName>`, on the
//! certificate authority). `RequestInProgressException` (a certificate
//! still being issued) is transient, so `limits::Limited`'s back-off polls
//! `GetCertificate`, bounded by its retries.

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::primitives::Blob;
use aws_sdk_acmpca::types::{RevocationReason, SigningAlgorithm, Validity, ValidityPeriodType};

use super::error::{base_code, classify, unexpected};
use crate::ports::{IssueRequest, IssuedCertificate, Operation, PortError, PortResult, PrivateCa};

/// AWS Private CA over the AWS SDK.
#[derive(Debug, Clone)]
pub struct AwsPrivateCa {
    client: Client,
}

impl AwsPrivateCa {
    /// A Private CA port calling AWS through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl PrivateCa for AwsPrivateCa {
    async fn issue_certificate(&self, request: &IssueRequest<'_>) -> PortResult<String> {
        let op = Operation::IssueCertificate;
        let validity = Validity::builder()
            .value(i64::from(request.validity_days))
            .r#type(ValidityPeriodType::Days)
            .build()
            .map_err(|e| PortError::Invalid {
                operation: op,
                message: e.to_string(),
            })?;
        let out = self
            .client
            .issue_certificate()
            .certificate_authority_arn(request.ca_arn)
            .csr(Blob::new(request.csr_pem.as_bytes()))
            .signing_algorithm(SigningAlgorithm::from(request.signing_algorithm))
            .validity(validity)
            .template_arn(request.template_arn)
            .idempotency_token(request.idempotency_token)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        out.certificate_arn()
            .map(str::to_owned)
            .ok_or_else(|| unexpected(op, "no CertificateArn"))
    }

    async fn get_certificate(
        &self,
        ca_arn: &str,
        certificate_arn: &str,
    ) -> PortResult<IssuedCertificate> {
        let op = Operation::GetCertificate;
        let out = self
            .client
            .get_certificate()
            .certificate_authority_arn(ca_arn)
            .certificate_arn(certificate_arn)
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(IssuedCertificate {
            certificate_pem: out
                .certificate()
                .ok_or_else(|| unexpected(op, "no Certificate"))?
                .to_owned(),
            certificate_chain_pem: out.certificate_chain().unwrap_or_default().to_owned(),
        })
    }

    async fn revoke_certificate(&self, ca_arn: &str, certificate_serial: &str) -> PortResult<()> {
        let op = Operation::RevokeCertificate;
        let result = self
            .client
            .revoke_certificate()
            .certificate_authority_arn(ca_arn)
            .certificate_serial(certificate_serial)
            .revocation_reason(RevocationReason::Superseded)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // revoked already: what was asked for
            Err(e)
                if aws_sdk_acmpca::error::ProvideErrorMetadata::code(&e)
                    .is_some_and(|c| base_code(c) == "RequestAlreadyProcessed") =>
            {
                Ok(())
            }
            Err(e) => Err(classify(op, &e)),
        }
    }
}
