//! What the moto-backed tests of the rotation table share: the SDK's
//! configuration for moto, the rotation table as infra declares it, and
//! the ports the real handlers run on (the DynamoDB adapter for the table,
//! the in-memory adapters for the rest).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use lambdas::aws::DynamoStore;
use lambdas::config::{
    CERTIFICATE_INDEX, CREATED_AT_ATTRIBUTE, DEADLINE_ATTRIBUTE, DUE_INDEX, DUE_KEY_ATTRIBUTE,
    OLD_CERTIFICATE_ATTRIBUTE,
};
use lambdas::memory::{MemoryPublisher, MemoryQueue, MemoryRegistry};
use lambdas::ports::PortSet;
use test_support::Moto;

pub const REGION: &str = "us-east-1";
pub const TABLE: &str = "rotations";

/// The SDK's configuration for `moto`, with dummy credentials.
pub async fn sdk(moto: &Moto) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(&moto.endpoint)
        .load()
        .await
}

pub fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    i64::try_from(ms).expect("ms")
}

/// The rotation table as infra declares it: hash key `rotationId`, the
/// sparse `due` index (`dueKey`, `deadlineMs`, projecting `row`).
pub async fn create_rotation_table(sdk: &SdkConfig) {
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    // projecting `row`, as infra's indexes do
    let index = |name: &str, hash: &str, range: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash))
            .key_schema(key(range, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("row")
                    .build(),
            )
            .build()
            .expect("index")
    };
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(attribute("rotationId", ScalarAttributeType::S))
        .attribute_definitions(attribute(DUE_KEY_ATTRIBUTE, ScalarAttributeType::S))
        .attribute_definitions(attribute(DEADLINE_ATTRIBUTE, ScalarAttributeType::N))
        .attribute_definitions(attribute(OLD_CERTIFICATE_ATTRIBUTE, ScalarAttributeType::S))
        .attribute_definitions(attribute(CREATED_AT_ATTRIBUTE, ScalarAttributeType::N))
        .key_schema(key("rotationId", KeyType::Hash))
        .global_secondary_indexes(index(DUE_INDEX, DUE_KEY_ATTRIBUTE, DEADLINE_ATTRIBUTE))
        .global_secondary_indexes(index(
            CERTIFICATE_INDEX,
            OLD_CERTIFICATE_ATTRIBUTE,
            CREATED_AT_ATTRIBUTE,
        ))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

pub type Ports = PortSet<
    MemoryRegistry,
    MemoryPublisher,
    DynamoStore,
    lambdas::memory::MemoryNotifier,
    MemoryQueue,
    lambdas::memory::MemoryPrivateCa,
>;
