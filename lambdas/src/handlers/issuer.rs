//! Where csr-issuer's new certificate comes from ([`crate::config::IssuerConfig`]):
//! one [`CertificateIssuer`] per issuer, chosen by configuration.
//!
//! Both hand back a certificate registered in AWS IoT, INACTIVE and
//! attached to nothing (csr-issuer records it, then attaches and activates
//! it), and both can [`discard`](CertificateIssuer::discard) one that was
//! never recorded. What a failed issue leaves behind decides how the claim
//! is handed back ([`Retake`]).

use rules::issuer::{PrivateCaSettings, idempotency_token};
use rules::rotation::Rotation;

use super::remove_certificate;
use crate::ports::{
    CertificateStatus, CreatedCertificate, IotRegistry, IssueRequest, Operation, PortError, Ports,
    PrivateCa, certificate_serial,
};
use rules::functions::Function;

const FUNCTION: Function = Function::CsrIssuer;

/// How the ISSUING claim is handed back after a failed issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retake {
    /// Nothing was issued that the next claim must not get back: the claim
    /// is released with its attempt number, so the retry asks again with
    /// the same idempotency token (ACM PCA then returns the certificate it
    /// may already have issued instead of a second one).
    SameAttempt,
    /// A certificate was issued and discarded (revoked): the next claim
    /// takes the next attempt number, so a new token.
    NextAttempt,
}

/// An issue that failed, and how to retake the claim.
#[derive(Debug)]
pub(crate) struct IssueFailure {
    pub(crate) error: PortError,
    pub(crate) retake: Retake,
}

impl IssueFailure {
    fn same(error: PortError) -> Self {
        Self {
            error,
            retake: Retake::SameAttempt,
        }
    }
}

/// Issues the certificate of one ISSUING claim.
pub(crate) trait CertificateIssuer: Sync {
    /// The certificate for `csr_pem`, registered in AWS IoT INACTIVE and
    /// attached to nothing.
    fn issue<P: Ports>(
        &self,
        ports: &P,
        claimed: &Rotation,
        csr_pem: &str,
        csr_fingerprint: &str,
    ) -> impl Future<Output = Result<CreatedCertificate, IssueFailure>> + Send;

    /// Removes a certificate this issuer created that was never recorded:
    /// from AWS IoT (detach, deactivate, delete) and, for a Private CA, by
    /// revoking it at the CA. Best effort: each failure is logged.
    fn discard<P: Ports>(
        &self,
        ports: &P,
        created: &CreatedCertificate,
    ) -> impl Future<Output = ()> + Send;
}

async fn remove_from_iot<P: Ports>(ports: &P, certificate_id: &str) {
    if let Err(e) = remove_certificate(ports, FUNCTION, certificate_id).await {
        tracing::error!(function = FUNCTION.name(), %certificate_id, error = %e, "could not remove an unrecorded certificate");
    }
}

/// AWS IoT's CA: `CreateCertificateFromCsr` (not idempotent: the claim
/// makes it called once per claim).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AwsIotIssuer;

impl CertificateIssuer for AwsIotIssuer {
    async fn issue<P: Ports>(
        &self,
        ports: &P,
        _claimed: &Rotation,
        csr_pem: &str,
        _csr_fingerprint: &str,
    ) -> Result<CreatedCertificate, IssueFailure> {
        ports
            .registry()
            .create_certificate_from_csr(csr_pem, false)
            .await
            .map_err(IssueFailure::same)
    }

    async fn discard<P: Ports>(&self, ports: &P, created: &CreatedCertificate) {
        remove_from_iot(ports, &created.certificate_id).await;
    }
}

/// AWS Private CA: `IssueCertificate` with the claim's idempotency token,
/// `GetCertificate` (polled while in progress by the adapters' back-off),
/// then `RegisterCertificate` INACTIVE with the issuing CA's certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrivateCaIssuer<'a> {
    pub(crate) settings: &'a PrivateCaSettings,
}

impl PrivateCaIssuer<'_> {
    async fn revoke<P: Ports>(&self, ports: &P, certificate_pem: &str) {
        let serial = match certificate_serial(certificate_pem) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(function = FUNCTION.name(), error = %e, "could not read the serial of a certificate to revoke");
                return;
            }
        };
        match ports
            .private_ca()
            .revoke_certificate(&self.settings.ca_arn, &serial)
            .await
        {
            Ok(()) => {
                tracing::info!(function = FUNCTION.name(), %serial, "revoked an unrecorded certificate at the private ca");
            }
            Err(e) => {
                tracing::error!(function = FUNCTION.name(), %serial, error = %e, "could not revoke an unrecorded certificate at the private ca");
            }
        }
    }
}

/// The first certificate of a PEM chain.
fn first_certificate(chain: &str) -> Option<&str> {
    const END: &str = "-----END CERTIFICATE-----";
    let start = chain.find("-----BEGIN CERTIFICATE-----")?;
    let end = chain[start..].find(END)? + start + END.len();
    Some(&chain[start..end])
}

impl CertificateIssuer for PrivateCaIssuer<'_> {
    async fn issue<P: Ports>(
        &self,
        ports: &P,
        claimed: &Rotation,
        csr_pem: &str,
        csr_fingerprint: &str,
    ) -> Result<CreatedCertificate, IssueFailure> {
        let s = self.settings;
        let token = idempotency_token(&claimed.rotation_id, claimed.attempts, csr_fingerprint);
        let request = IssueRequest {
            ca_arn: &s.ca_arn,
            csr_pem,
            signing_algorithm: s.signing_algorithm.as_str(),
            validity_days: s.validity_days,
            template_arn: &s.template_arn,
            idempotency_token: &token,
        };
        let ca = ports.private_ca();
        // Until the certificate is in hand, a retry with the same token
        // gets this certificate back rather than a second one.
        let arn = ca
            .issue_certificate(&request)
            .await
            .map_err(IssueFailure::same)?;
        let issued = ca
            .get_certificate(&s.ca_arn, &arn)
            .await
            .map_err(IssueFailure::same)?;
        let pem = issued.certificate_pem.as_str();
        // From here on the certificate exists: any failure revokes it.
        let discard = |error: PortError| async move {
            self.revoke(ports, pem).await;
            IssueFailure {
                error,
                retake: Retake::NextAttempt,
            }
        };
        let certifies_the_csr_key = rules::csr::inspect_certificate(pem)
            .is_ok_and(|info| info.public_key_fingerprint == csr_fingerprint);
        if !certifies_the_csr_key {
            return Err(discard(PortError::Invalid {
                operation: Operation::GetCertificate,
                message: format!("{arn} does not certify the csr's key"),
            })
            .await);
        }
        let Some(ca_pem) = first_certificate(&issued.certificate_chain_pem) else {
            return Err(discard(PortError::Invalid {
                operation: Operation::GetCertificate,
                message: format!("{arn} came without the issuing ca's certificate"),
            })
            .await);
        };
        let registry = ports.registry();
        match registry
            .register_certificate(pem, ca_pem, CertificateStatus::Inactive)
            .await
        {
            Ok(created) => Ok(created),
            // Registered by this claim's earlier attempt whose answer was
            // lost: the same certificate (its id is its DER's hash).
            Err(PortError::Conflict { .. }) => {
                let id = rules::csr::certificate_id(pem).map_err(|e| {
                    IssueFailure::same(PortError::Invalid {
                        operation: Operation::RegisterCertificate,
                        message: e.to_string(),
                    })
                })?;
                match registry.describe_certificate(&id).await {
                    Ok(found) if found.status == CertificateStatus::Inactive => {
                        Ok(CreatedCertificate {
                            certificate_id: found.certificate_id,
                            certificate_arn: found.certificate_arn,
                            certificate_pem: found.certificate_pem,
                        })
                    }
                    // In use elsewhere: never revoke it; the next claim
                    // asks for another certificate.
                    Ok(found) => Err(IssueFailure {
                        error: PortError::Conflict {
                            operation: Operation::RegisterCertificate,
                            message: format!(
                                "certificate {id} is already registered, {}",
                                found.status
                            ),
                        },
                        retake: Retake::NextAttempt,
                    }),
                    Err(e) => Err(discard(e).await),
                }
            }
            Err(e) => {
                // The registration may have happened (a lost answer).
                if let Ok(id) = rules::csr::certificate_id(pem) {
                    remove_from_iot(ports, &id).await;
                }
                Err(discard(e).await)
            }
        }
    }

    async fn discard<P: Ports>(&self, ports: &P, created: &CreatedCertificate) {
        remove_from_iot(ports, &created.certificate_id).await;
        self.revoke(ports, &created.certificate_pem).await;
    }
}

#[cfg(test)]
mod tests {
    use super::first_certificate;

    #[test]
    fn the_first_certificate_of_a_chain() {
        let a = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----";
        let b = "-----BEGIN CERTIFICATE-----\nBB==\n-----END CERTIFICATE-----";
        assert_eq!(first_certificate(&format!("{a}\n{b}\n")), Some(a));
        assert_eq!(first_certificate(""), None);
        assert_eq!(first_certificate("-----BEGIN CERTIFICATE-----\nAA=="), None);
    }
}
