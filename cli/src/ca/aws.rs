//! The AWS IoT calls behind `fleetcert ca`: one method per API operation,
//! every SDK error mapped to a [`CaError`] carrying the code and message AWS
//! returned, and the rate-limited bulk revocation.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_iot::Client;
use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iot::primitives::{DateTime, DateTimeFormat};
use aws_sdk_iot::types::{AutoRegistrationStatus, CaCertificateStatus, CertificateStatus};
use governor::{Quota, RateLimiter};
use serde::Serialize;

/// Upper bound on the pages one listing follows (a server that keeps
/// returning markers must not keep us looping).
const MAX_PAGES: usize = 100_000;

/// An AWS IoT call that failed, with what AWS (or the network) said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("{operation} failed: AWS returned {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
        http_status: Option<u16>,
    },
    #[error("{operation} failed: cannot reach the AWS IoT endpoint {endpoint}: {reason}")]
    Unreachable {
        operation: &'static str,
        endpoint: String,
        reason: String,
    },
    #[error("{operation} failed: no answer from {endpoint} in time")]
    Timeout {
        operation: &'static str,
        endpoint: String,
    },
    #[error("{operation} failed: unreadable answer from {endpoint}: {reason}")]
    BadResponse {
        operation: &'static str,
        endpoint: String,
        reason: String,
    },
    #[error("{operation} failed: {reason}")]
    Request {
        operation: &'static str,
        reason: String,
    },
    #[error("{operation}: the answer has no {field}")]
    MissingField {
        operation: &'static str,
        field: &'static str,
    },
    #[error("{operation}: the endpoint returned the page marker {marker:?} twice; stopped")]
    PagingLoop {
        operation: &'static str,
        marker: String,
    },
    #[error(
        "{operation}: still more after {pages} pages; stopped instead of printing a partial list"
    )]
    TooManyPages {
        operation: &'static str,
        pages: usize,
    },
}

impl CaError {
    /// True when the error concerns the one resource named in the request
    /// (unknown id, wrong state), so that other resources may still succeed;
    /// false when the service or the network failed and going on is pointless.
    pub fn is_per_resource(&self) -> bool {
        matches!(self, Self::Service { code, .. } if matches!(
            code.as_str(),
            "ResourceNotFoundException" | "InvalidRequestException" | "CertificateStateException"
        ))
    }
}

fn map_err<E>(operation: &'static str, endpoint: &str, err: SdkError<E, HttpResponse>) -> CaError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let http_status = err.raw_response().map(|r| r.status().as_u16());
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e
                .code()
                .map(str::to_owned)
                .unwrap_or_else(|| match http_status {
                    Some(s) => format!("HTTP {s}"),
                    None => "an unnamed error".to_owned(),
                });
            let message = e
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| "(no message)".to_owned());
            CaError::Service {
                operation,
                code,
                message,
                http_status,
            }
        }
        SdkError::DispatchFailure(_) => CaError::Unreachable {
            operation,
            endpoint: endpoint.to_owned(),
            reason: DisplayErrorContext(&err).to_string(),
        },
        SdkError::TimeoutError(_) => CaError::Timeout {
            operation,
            endpoint: endpoint.to_owned(),
        },
        SdkError::ResponseError(_) => CaError::BadResponse {
            operation,
            endpoint: endpoint.to_owned(),
            reason: DisplayErrorContext(&err).to_string(),
        },
        _ => CaError::Request {
            operation,
            reason: DisplayErrorContext(&err).to_string(),
        },
    }
}

/// Where to send the calls and how hard to retry.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Attempts per call (the SDK's standard retry: exponential back-off with
    /// jitter on throttling, 5xx and transient network errors).
    pub max_attempts: u32,
}

/// A CA as ListCACertificates returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaSummary {
    pub certificate_id: String,
    pub certificate_arn: Option<String>,
    pub status: Option<String>,
    pub creation_date: Option<String>,
}

/// A CA as DescribeCACertificate returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaDetail {
    pub certificate_id: String,
    pub certificate_arn: Option<String>,
    pub status: Option<String>,
    pub auto_registration_status: Option<String>,
    pub certificate_mode: Option<String>,
    pub owned_by: Option<String>,
    pub creation_date: Option<String>,
    pub last_modified_date: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub certificate_pem: Option<String>,
}

/// A device certificate as ListCertificatesByCA returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertSummary {
    pub certificate_id: String,
    pub certificate_arn: Option<String>,
    pub status: Option<String>,
    pub certificate_mode: Option<String>,
    pub creation_date: Option<String>,
}

/// What RegisterCACertificate returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub certificate_id: String,
    pub certificate_arn: Option<String>,
}

fn date(d: Option<&DateTime>) -> Option<String> {
    d.and_then(|d| d.fmt(DateTimeFormat::DateTime).ok())
}

/// The AWS IoT control plane, as `fleetcert ca` uses it.
#[derive(Debug, Clone)]
pub struct Iot {
    client: Client,
    /// Named in connection errors.
    endpoint: String,
}

impl Iot {
    /// Loads the standard AWS configuration (environment, profile, SSO,
    /// instance role...) with the overrides given.
    pub async fn connect(conn: &Connection) -> anyhow::Result<Self> {
        let config = sdk_config(conn).await?;
        let endpoint = match &conn.endpoint_url {
            Some(url) => url.clone(),
            None => format!(
                "https://iot.{}.amazonaws.com",
                config.region().map(|r| r.as_ref()).unwrap_or_default()
            ),
        };
        Ok(Self::from_client(Client::new(&config), endpoint))
    }

    pub fn from_client(client: Client, endpoint: String) -> Self {
        Self { client, endpoint }
    }
}

/// The standard AWS configuration (environment, profile, SSO, instance
/// role...) with the overrides given, for any AWS client of the CLI.
///
/// # Errors
/// When no region is configured.
pub async fn sdk_config(conn: &Connection) -> anyhow::Result<aws_config::SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(conn.max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(region) = &conn.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &conn.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &conn.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        anyhow::bail!(
            "no AWS region: pass --region, or set AWS_REGION or a region in the AWS profile"
        );
    }
    Ok(config)
}

impl Iot {
    /// The SDK client, for commands that page listings of their own
    /// (`fleetcert adopt`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn registration_code(&self) -> Result<String, CaError> {
        const OP: &str = "GetRegistrationCode";
        let out = self
            .client
            .get_registration_code()
            .send()
            .await
            .map_err(|e| map_err(OP, &self.endpoint, e))?;
        out.registration_code
            .filter(|c| !c.is_empty())
            .ok_or(CaError::MissingField {
                operation: OP,
                field: "registrationCode",
            })
    }

    pub async fn register_ca(
        &self,
        ca_pem: &str,
        verification_pem: &str,
        active: bool,
        auto_registration: bool,
    ) -> Result<Registered, CaError> {
        const OP: &str = "RegisterCACertificate";
        let out = self
            .client
            .register_ca_certificate()
            .ca_certificate(ca_pem)
            .verification_certificate(verification_pem)
            .set_as_active(active)
            .allow_auto_registration(auto_registration)
            .send()
            .await
            .map_err(|e| map_err(OP, &self.endpoint, e))?;
        Ok(Registered {
            certificate_id: out.certificate_id.ok_or(CaError::MissingField {
                operation: OP,
                field: "certificateId",
            })?,
            certificate_arn: out.certificate_arn,
        })
    }

    pub async fn set_ca_status(&self, ca_id: &str, active: bool) -> Result<(), CaError> {
        let status = if active {
            CaCertificateStatus::Active
        } else {
            CaCertificateStatus::Inactive
        };
        self.client
            .update_ca_certificate()
            .certificate_id(ca_id)
            .new_status(status)
            .send()
            .await
            .map_err(|e| map_err("UpdateCACertificate", &self.endpoint, e))?;
        Ok(())
    }

    pub async fn set_auto_registration(&self, ca_id: &str, on: bool) -> Result<(), CaError> {
        let status = if on {
            AutoRegistrationStatus::Enable
        } else {
            AutoRegistrationStatus::Disable
        };
        self.client
            .update_ca_certificate()
            .certificate_id(ca_id)
            .new_auto_registration_status(status)
            .send()
            .await
            .map_err(|e| map_err("UpdateCACertificate", &self.endpoint, e))?;
        Ok(())
    }

    pub async fn describe_ca(&self, ca_id: &str) -> Result<CaDetail, CaError> {
        const OP: &str = "DescribeCACertificate";
        let out = self
            .client
            .describe_ca_certificate()
            .certificate_id(ca_id)
            .send()
            .await
            .map_err(|e| map_err(OP, &self.endpoint, e))?;
        let d = out.certificate_description.ok_or(CaError::MissingField {
            operation: OP,
            field: "certificateDescription",
        })?;
        let validity = d.validity.as_ref();
        Ok(CaDetail {
            certificate_id: d.certificate_id.clone().unwrap_or_else(|| ca_id.to_owned()),
            certificate_arn: d.certificate_arn.clone(),
            status: d.status.as_ref().map(|s| s.as_str().to_owned()),
            auto_registration_status: d
                .auto_registration_status
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            certificate_mode: d.certificate_mode.as_ref().map(|s| s.as_str().to_owned()),
            owned_by: d.owned_by.clone(),
            creation_date: date(d.creation_date.as_ref()),
            last_modified_date: date(d.last_modified_date.as_ref()),
            not_before: date(validity.and_then(|v| v.not_before.as_ref())),
            not_after: date(validity.and_then(|v| v.not_after.as_ref())),
            certificate_pem: d.certificate_pem.clone(),
        })
    }

    /// Every CA of the account, following every page; `on_page` is told the
    /// running total after each page.
    pub async fn list_cas(
        &self,
        page_size: Option<i32>,
        on_page: impl FnMut(usize),
    ) -> Result<Vec<CaSummary>, CaError> {
        const OP: &str = "ListCACertificates";
        let all = follow_markers(OP, on_page, |marker| {
            let request = self
                .client
                .list_ca_certificates()
                .set_page_size(page_size)
                .set_marker(marker);
            async move {
                let out = request.send().await;
                let out = out.map_err(|e| map_err(OP, &self.endpoint, e))?;
                Ok((out.certificates.unwrap_or_default(), out.next_marker))
            }
        })
        .await?;
        all.into_iter()
            .map(|c| {
                Ok(CaSummary {
                    certificate_id: required_id(OP, c.certificate_id)?,
                    certificate_arn: c.certificate_arn,
                    status: c.status.map(|s| s.as_str().to_owned()),
                    creation_date: date(c.creation_date.as_ref()),
                })
            })
            .collect()
    }

    /// Every certificate issued by `ca_id` that is registered, following every page.
    pub async fn list_certificates_by_ca(
        &self,
        ca_id: &str,
        page_size: Option<i32>,
        on_page: impl FnMut(usize),
    ) -> Result<Vec<CertSummary>, CaError> {
        const OP: &str = "ListCertificatesByCA";
        let all = follow_markers(OP, on_page, |marker| {
            let request = self
                .client
                .list_certificates_by_ca()
                .ca_certificate_id(ca_id)
                .set_page_size(page_size)
                .set_marker(marker);
            async move {
                let out = request.send().await;
                let out = out.map_err(|e| map_err(OP, &self.endpoint, e))?;
                Ok((out.certificates.unwrap_or_default(), out.next_marker))
            }
        })
        .await?;
        all.into_iter()
            .map(|c| {
                Ok(CertSummary {
                    certificate_id: required_id(OP, c.certificate_id)?,
                    certificate_arn: c.certificate_arn,
                    status: c.status.map(|s| s.as_str().to_owned()),
                    certificate_mode: c.certificate_mode.map(|s| s.as_str().to_owned()),
                    creation_date: date(c.creation_date.as_ref()),
                })
            })
            .collect()
    }

    pub async fn revoke(&self, certificate_id: &str) -> Result<(), CaError> {
        self.client
            .update_certificate()
            .certificate_id(certificate_id)
            .new_status(CertificateStatus::Revoked)
            .send()
            .await
            .map_err(|e| map_err("UpdateCertificate", &self.endpoint, e))?;
        Ok(())
    }

    /// Revokes `ids` at most `rate` calls per second (the UpdateCertificate
    /// quota), up to `rate` calls in flight. A per-certificate failure (unknown
    /// id, wrong state) is recorded and the others go on; a service or network
    /// failure stops the batch and the ids not yet sent are reported as such.
    pub async fn revoke_many(
        &self,
        ids: &[String],
        rate: NonZeroU32,
        mut on_result: impl FnMut(&str, &Result<(), CaError>),
    ) -> RevokeReport {
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
        let in_flight_max = rate.get().min(64) as usize;
        let mut report = RevokeReport::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut in_flight = std::collections::HashMap::new();
        let mut stopped = false;
        let mut next = 0;
        while next < ids.len() || !tasks.is_empty() {
            if !stopped && next < ids.len() && tasks.len() < in_flight_max {
                limiter.until_ready().await;
                let id = ids[next].clone();
                next += 1;
                let this = self.clone();
                let task_id = id.clone();
                let handle = tasks.spawn(async move {
                    let r = this.revoke(&task_id).await;
                    (task_id, r)
                });
                in_flight.insert(handle.id(), id);
                continue;
            }
            if stopped && tasks.is_empty() {
                break;
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (id, result) = match joined {
                Ok((task, v)) => {
                    in_flight.remove(&task);
                    v
                }
                Err(e) => {
                    // The task died: whether AWS applied the call is unknown.
                    let id = in_flight.remove(&e.id()).unwrap_or_default();
                    let why = format!("the revocation task failed ({e}); the status is unknown");
                    report.stopped_by.get_or_insert_with(|| why.clone());
                    stopped = true;
                    report.failed.push(Failed {
                        certificate_id: id,
                        error: why,
                    });
                    continue;
                }
            };
            on_result(&id, &result);
            match result {
                Ok(()) => report.revoked.push(id),
                Err(e) => {
                    if !e.is_per_resource() && report.stopped_by.is_none() {
                        report.stopped_by = Some(e.to_string());
                        stopped = true;
                    }
                    report.failed.push(Failed {
                        certificate_id: id,
                        error: e.to_string(),
                    });
                }
            }
        }
        report.not_attempted = ids[next..].to_vec();
        report
    }
}

/// Every item of a marker-paged listing: `fetch` gets each page's marker
/// (none for the first) and returns the page's items and the next marker.
/// A marker seen twice is [`CaError::PagingLoop`]; more than [`MAX_PAGES`]
/// pages is [`CaError::TooManyPages`], never a listing cut short silently.
/// `fetch`'s own error type may be any that a `CaError` converts into
/// (`fleetcert adopt` pages with `anyhow`).
pub(crate) async fn follow_markers<T, E, F, Fut>(
    operation: &'static str,
    mut on_page: impl FnMut(usize),
    mut fetch: F,
) -> Result<Vec<T>, E>
where
    E: From<CaError>,
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), E>>,
{
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (items, next) = fetch(marker.clone()).await?;
        all.extend(items);
        on_page(all.len());
        match next_marker(operation, &marker, next)? {
            Some(m) => marker = Some(m),
            None => return Ok(all),
        }
    }
    Err(E::from(CaError::TooManyPages {
        operation,
        pages: MAX_PAGES,
    }))
}

/// A limiter of calls per second, one for a whole command.
pub(crate) type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

/// [`follow_markers`] with each page paced by `limiter` (`fleetcert
/// adopt` and `rotate`, which page with `anyhow`).
pub(crate) async fn paced_pages<T, F, Fut>(
    limiter: &Limiter,
    operation: &'static str,
    mut fetch: F,
) -> anyhow::Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<T>, Option<String>)>>,
{
    follow_markers(
        operation,
        |_| {},
        |marker| {
            let page = fetch(marker);
            async move {
                limiter.until_ready().await;
                page.await
            }
        },
    )
    .await
}

/// A listed certificate's id, which AWS always sends.
fn required_id(operation: &'static str, id: Option<String>) -> Result<String, CaError> {
    id.ok_or(CaError::MissingField {
        operation,
        field: "certificateId",
    })
}

fn next_marker(
    operation: &'static str,
    previous: &Option<String>,
    next: Option<String>,
) -> Result<Option<String>, CaError> {
    match next.filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) if previous.as_deref() == Some(m.as_str()) => Err(CaError::PagingLoop {
            operation,
            marker: m,
        }),
        Some(m) => Ok(Some(m)),
    }
}

/// One certificate a revocation failed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub certificate_id: String,
    pub error: String,
}

/// What a bulk revocation did, certificate by certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeReport {
    pub revoked: Vec<String>,
    pub failed: Vec<Failed>,
    /// Not sent because the batch stopped on a service or network failure.
    pub not_attempted: Vec<String>,
    /// The failure that stopped the batch.
    pub stopped_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iot::error::ErrorMetadata;
    use aws_sdk_iot::operation::list_ca_certificates::ListCaCertificatesOutput;
    use aws_sdk_iot::operation::list_certificates_by_ca::ListCertificatesByCaOutput;
    use aws_sdk_iot::operation::update_certificate::{
        UpdateCertificateError, UpdateCertificateOutput,
    };
    use aws_sdk_iot::types::error::ResourceNotFoundException;
    use aws_sdk_iot::types::{CaCertificate, Certificate};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn iot(client: Client) -> Iot {
        Iot::from_client(client, "mock".into())
    }

    fn ca(id: &str) -> CaCertificate {
        CaCertificate::builder()
            .certificate_id(id)
            .certificate_arn(format!("arn:aws:iot:eu-west-1:123456789012:cacert/{id}"))
            .status(CaCertificateStatus::Active)
            .build()
    }

    #[tokio::test]
    async fn list_cas_follows_every_page_and_passes_the_page_size() {
        let first = mock!(Client::list_ca_certificates)
            .match_requests(|r| r.marker().is_none() && r.page_size() == Some(2))
            .then_output(|| {
                ListCaCertificatesOutput::builder()
                    .certificates(ca("a"))
                    .certificates(ca("b"))
                    .next_marker("m1")
                    .build()
            });
        let second = mock!(Client::list_ca_certificates)
            .match_requests(|r| r.marker() == Some("m1"))
            .then_output(|| {
                ListCaCertificatesOutput::builder()
                    .certificates(ca("c"))
                    .build()
            });
        let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, [&first, &second]);
        let mut pages = Vec::new();
        let all = iot(client)
            .list_cas(Some(2), |n| pages.push(n))
            .await
            .unwrap();
        let ids: Vec<_> = all.iter().map(|c| c.certificate_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(all[0].status.as_deref(), Some("ACTIVE"));
        assert_eq!(pages, [2, 3]);
        assert_eq!(first.num_calls(), 1);
        assert_eq!(second.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_marker_returned_twice_stops_the_listing() {
        let page = mock!(Client::list_certificates_by_ca).then_output(|| {
            ListCertificatesByCaOutput::builder()
                .certificates(Certificate::builder().certificate_id("x").build())
                .next_marker("same")
                .build()
        });
        let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, [&page]);
        let err = iot(client)
            .list_certificates_by_ca("ca", None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, CaError::PagingLoop { .. }), "{err}");
        assert_eq!(page.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_listing_that_never_ends_is_an_error_not_a_partial_list() {
        let mut calls = 0usize;
        let err = follow_markers(
            "ListCACertificates",
            |_| {},
            |_| {
                calls += 1;
                let next = format!("m{calls}");
                async move { Ok((vec![1u8], Some(next))) }
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                CaError::TooManyPages {
                    pages: MAX_PAGES,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(calls, MAX_PAGES);
        assert!(err.to_string().contains("ListCACertificates"), "{err}");
    }

    #[tokio::test]
    async fn certificates_by_ca_follow_three_pages() {
        let rules: Vec<_> = (0..3)
            .map(|i| {
                mock!(Client::list_certificates_by_ca)
                    .match_requests(move |r| {
                        r.ca_certificate_id() == Some("ca1")
                            && r.marker() == (i > 0).then(|| format!("p{i}")).as_deref()
                    })
                    .then_output(move || {
                        let mut b = ListCertificatesByCaOutput::builder().certificates(
                            Certificate::builder()
                                .certificate_id(format!("cert{i}"))
                                .status(CertificateStatus::Active)
                                .build(),
                        );
                        if i < 2 {
                            b = b.next_marker(format!("p{}", i + 1));
                        }
                        b.build()
                    })
            })
            .collect();
        let client = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [&rules[0], &rules[1], &rules[2]]
        );
        let all = iot(client)
            .list_certificates_by_ca("ca1", Some(1), |_| {})
            .await
            .unwrap();
        let ids: Vec<_> = all.iter().map(|c| c.certificate_id.as_str()).collect();
        assert_eq!(ids, ["cert0", "cert1", "cert2"]);
    }

    #[tokio::test]
    async fn revoke_many_goes_on_after_an_unknown_id_and_reports_it() {
        let ok = mock!(Client::update_certificate)
            .match_requests(|r| r.certificate_id() != Some("nope"))
            .then_output(|| UpdateCertificateOutput::builder().build());
        let unknown = mock!(Client::update_certificate)
            .match_requests(|r| r.certificate_id() == Some("nope"))
            .then_error(|| {
                // As the SDK parses it from AWS's answer: with the error metadata.
                UpdateCertificateError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .message("The certificate nope does not exist")
                        .meta(
                            ErrorMetadata::builder()
                                .code("ResourceNotFoundException")
                                .message("The certificate nope does not exist")
                                .build(),
                        )
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, [&ok, &unknown]);
        let ids: Vec<String> = ["a", "nope", "b"].map(String::from).to_vec();
        let report = iot(client)
            .revoke_many(&ids, NonZeroU32::new(100).unwrap(), |_, _| {})
            .await;
        let mut revoked = report.revoked.clone();
        revoked.sort();
        assert_eq!(revoked, ["a", "b"]);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].certificate_id, "nope");
        assert_eq!(
            report.failed[0].error,
            "UpdateCertificate failed: AWS returned ResourceNotFoundException: \
             The certificate nope does not exist"
        );
        assert!(report.not_attempted.is_empty());
        assert_eq!(report.stopped_by, None);
    }
}
