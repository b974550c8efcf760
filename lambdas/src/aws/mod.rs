//! The AWS SDK adapters of the ports (feature `aws`).
//!
//! [`load`] builds all six from the Lambda environment; [`from_sdk_config`]
//! from a given [`SdkConfig`] (tests point it at moto). Every SDK error is
//! classified into a [`PortError`] by one
//! function (`aws/error.rs`), so the handlers and the rate limiter see the
//! same kinds as with the memory adapters.
//!
//! IAM actions, per port: the registry calls `iot:<OperationName>` for each
//! registry [`Operation`] (and
//! `iot:DescribeEndpoint` once in [`load`]); the publisher `iot:Publish`;
//! the store `dynamodb:PutItem`, `dynamodb:UpdateItem`, `dynamodb:GetItem`,
//! `dynamodb:Scan`; the notifier `sns:Publish`; the queue `sqs:SendMessage`;
//! the Private CA `acm-pca:IssueCertificate`, `GetCertificate`,
//! `RevokeCertificate`.

use aws_config::{BehaviorVersion, SdkConfig};

use rules::functions::Function;

use crate::config::Config;
use crate::ports::{Operation, PortError, PortSet};

pub mod dynamo;
mod error;
pub mod iot;
pub mod iot_data;
pub mod pca;
pub mod sns;
pub mod sqs;

pub use dynamo::DynamoStore;
pub use iot::AwsRegistry;
pub use iot_data::AwsPublisher;
pub use pca::AwsPrivateCa;
pub use sns::SnsNotifier;
pub use sqs::SqsQueue;

/// The six AWS adapters as one [`Ports`](crate::ports::Ports) bundle (the
/// Private CA client is built for every function and called only by
/// csr-issuer when its issuer is `private_ca`; building it calls nothing).
pub type AwsPorts =
    PortSet<AwsRegistry, AwsPublisher, DynamoStore, SnsNotifier, SqsQueue, AwsPrivateCa>;

/// The environment variable naming the iot-data endpoint (a host such as
/// `abc123-ats.iot.eu-west-1.amazonaws.com`, or a URL); when unset, [`load`]
/// asks `DescribeEndpoint(iot:Data-ATS)`.
pub const IOT_DATA_ENDPOINT_ENV: &str = "IOT_DATA_ENDPOINT";

/// Why the adapters could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AwsInitError {
    /// No region in the environment or the profile (`AWS_REGION`).
    #[error("no AWS region is configured (set AWS_REGION)")]
    NoRegion,
    /// `DescribeEndpoint` failed.
    #[error("DescribeEndpoint(iot:Data-ATS) failed ({kind}): {message}")]
    DescribeEndpoint {
        /// The error's [`PortError::kind`] (`throttled`, `transient`, ...).
        kind: &'static str,
        /// What the service or the connection said.
        message: String,
    },
    /// `DescribeEndpoint` answered without an address.
    #[error("DescribeEndpoint(iot:Data-ATS) returned no endpoint address")]
    NoEndpointAddress,
}

/// Builds the five adapters from the environment: the SDK's default
/// configuration (region, credential chain, `AWS_ENDPOINT_URL*`), the
/// iot-data endpoint from [`IOT_DATA_ENDPOINT_ENV`] or `DescribeEndpoint`.
///
/// # Errors
/// [`AwsInitError`] when no region is configured or the endpoint lookup
/// fails.
pub async fn load(config: &Config) -> Result<AwsPorts, AwsInitError> {
    // Retries belong to `limits::Limited`, which never retries
    // CreateCertificateFromCsr after a transient failure (the certificate
    // may exist: a retry would orphan one). The SDK's standard retry would,
    // and stacked under Limited it would also multiply every other retry.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    if sdk.region().is_none() {
        return Err(AwsInitError::NoRegion);
    }
    let endpoint = match std::env::var(IOT_DATA_ENDPOINT_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => describe_data_endpoint(&aws_sdk_iot::Client::new(&sdk)).await?,
    };
    Ok(from_sdk_config(&sdk, config, &endpoint))
}

/// [`load`] for `function`: the iot-data endpoint is looked up (and
/// `iot:DescribeEndpoint` called) only when the function publishes
/// ([`crate::handlers::publishes`]); the others are not granted that
/// action, and on AWS a start-up call their role refuses would fail every
/// invocation before it begins.
///
/// # Errors
/// As [`load`].
pub async fn load_for(function: Function, config: &Config) -> Result<AwsPorts, AwsInitError> {
    if crate::handlers::publishes(function) {
        return load(config).await;
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    if sdk.region().is_none() {
        return Err(AwsInitError::NoRegion);
    }
    // Never called: the SDK's own iot-data endpoint for the region.
    Ok(build(&sdk, config, None))
}

/// `DescribeEndpoint(endpointType = iot:Data-ATS)`: the account's iot-data
/// host.
///
/// # Errors
/// [`AwsInitError::DescribeEndpoint`] or
/// [`AwsInitError::NoEndpointAddress`].
pub async fn describe_data_endpoint(client: &aws_sdk_iot::Client) -> Result<String, AwsInitError> {
    let out = client
        .describe_endpoint()
        .endpoint_type("iot:Data-ATS")
        .send()
        .await
        .map_err(|e| {
            // DescribeEndpoint is no port operation; the classification
            // needs one only to label the error, which is dropped here.
            let e: PortError = error::classify(Operation::DescribeCertificate, &e);
            AwsInitError::DescribeEndpoint {
                kind: e.kind(),
                message: e.message().to_owned(),
            }
        })?;
    out.endpoint_address()
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .ok_or(AwsInitError::NoEndpointAddress)
}

/// The five adapters over clients built from `sdk`, publishing through
/// `data_endpoint` (a host, called over https, or a URL).
pub fn from_sdk_config(sdk: &SdkConfig, config: &Config, data_endpoint: &str) -> AwsPorts {
    build(sdk, config, Some(data_endpoint))
}

fn build(sdk: &SdkConfig, config: &Config, data_endpoint: Option<&str>) -> AwsPorts {
    let mut data = aws_sdk_iotdataplane::config::Builder::from(sdk);
    if let Some(endpoint) = data_endpoint {
        data = data.endpoint_url(if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("https://{endpoint}")
        });
    }
    let data = data.build();
    PortSet {
        registry: AwsRegistry::new(aws_sdk_iot::Client::new(sdk)),
        publisher: AwsPublisher::new(aws_sdk_iotdataplane::Client::from_conf(data)),
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.rotation_table)
            .with_ttl_days(config.rotation_ttl_days),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(sdk), &config.support_topic_arn),
        queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &config.rotation_queue_url),
        private_ca: AwsPrivateCa::new(aws_sdk_acmpca::Client::new(sdk)),
    }
}
