//! [`AwsPublisher`]: MQTT publishing through the iot-data plane
//! (`aws-sdk-iotdataplane` `Publish`, IAM action `iot:Publish`).

use aws_sdk_iotdataplane::Client;
use aws_sdk_iotdataplane::primitives::Blob;

use super::error::classify;
use crate::ports::{Operation, PortError, PortResult, Publisher};

/// Publishes through the account's iot-data endpoint.
#[derive(Debug, Clone)]
pub struct AwsPublisher {
    client: Client,
}

impl AwsPublisher {
    /// A publisher calling iot-data through `client` (whose endpoint is the
    /// account's `iot:Data-ATS` endpoint).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Publisher for AwsPublisher {
    async fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> PortResult<()> {
        let op = Operation::Publish;
        if qos > 1 {
            return Err(PortError::Invalid {
                operation: op,
                message: format!("qos {qos} is not 0 or 1"),
            });
        }
        self.client
            .publish()
            .topic(topic)
            .qos(i32::from(qos))
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| classify(op, &e))?;
        Ok(())
    }
}
