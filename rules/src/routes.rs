//! The topic rules fleetcert deploys, defined once: `infra` synthesizes
//! them as `AWS::IoT::TopicRule` resources, the emulator runs them through
//! a [`Router`].

use serde_json::Value;

use crate::functions::Function;
use crate::sql::{self, EvalError, MessageContext, SqlError, Statement};
use crate::topic;

/// Longest IoT rule name AWS accepts.
pub const MAX_RULE_NAME_LEN: usize = 128;

/// One topic rule: its name, IoT SQL (version 2016-03-23) statement and the
/// Lambda function it invokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedRule {
    /// The rule name, `^[a-zA-Z0-9_]+$`, at most 128 characters.
    pub name: String,
    /// The IoT SQL statement, exactly as deployed.
    pub sql: String,
    /// The function the rule's Lambda action invokes.
    pub function: Function,
    /// A description for the rule resource.
    pub description: String,
}

/// Why the deployed rules could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A JITR CA certificate id is not the 64 hex digits AWS IoT uses.
    #[error("invalid CA certificate id {id:?}: expected 64 hex digits")]
    InvalidCaCertificateId {
        /// The id as given.
        id: String,
    },
}

/// Whether `name` is a valid IoT rule name: `^[a-zA-Z0-9_]+$`, ≤ 128.
pub fn is_valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RULE_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A management topic rule. The trusted fields (`clientid()`,
/// `principal()`, `topic(3)`) are selected by function and the payload's
/// fields by name, never with `*`: AWS does not document whether a payload
/// key wins over a selected function of the same name when `*` is merged,
/// so a device could otherwise name another thing in its own message. The
/// `WHERE` clause drops a message published on another device's topic
/// before any function runs (the device policy refuses it too).
fn management_rule(
    kind: topic::MessageKind,
    select: &str,
    function: Function,
    description: &str,
) -> DeployedRule {
    DeployedRule {
        name: format!("fleetcert_{}", kind.suffix()),
        sql: format!(
            "SELECT {select} FROM '{}+/{}' WHERE topic(3) = clientid()",
            topic::MANAGEMENT_PREFIX,
            kind.suffix()
        ),
        function,
        description: description.to_owned(),
    }
}

/// The rules fleetcert deploys: `csr_res`, `crt_ack` and `crt_err` on the
/// management topics, and one JITR rule per CA certificate id.
///
/// The JITR rule is named `fleetcert_jitr_<first 16 characters of the id>`.
/// Ids are not checked here; [`try_deployed_rules`] checks them (an id
/// with `+`, `#` or `/` would silently widen the rule's topic filter).
pub fn deployed_rules(jitr_ca_certificate_ids: &[&str]) -> Vec<DeployedRule> {
    let mut rules = vec![
        management_rule(
            topic::MessageKind::CsrRes,
            "clientid() as clientid, topic(3) as topicClientId, CSR, rotationId",
            Function::CsrIssuer,
            "fleetcert: a device's CSR goes to the CSR issuer",
        ),
        management_rule(
            topic::MessageKind::CrtAck,
            "clientid() as clientid, principal() as principal, topic(3) as topicClientId, rotationId, certificateId",
            Function::Commit,
            "fleetcert: an ack on the new certificate commits the rotation",
        ),
        management_rule(
            topic::MessageKind::CrtErr,
            "clientid() as clientid, principal() as principal, topic(3) as topicClientId, error, rotationId",
            Function::ErrorHandler,
            "fleetcert: a device's certificate error goes to the error handler",
        ),
    ];
    rules.extend(jitr_ca_certificate_ids.iter().map(|id| {
        let short: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        DeployedRule {
            name: format!("fleetcert_jitr_{short}"),
            sql: format!("SELECT * FROM '{}'", topic::jitr_registered_topic(id)),
            function: Function::JitrActivator,
            description: format!("fleetcert: JITR registration events of CA {id}"),
        }
    }));
    rules
}

/// [`deployed_rules`], after checking that every CA certificate id is 64
/// hex digits (the form AWS IoT gives certificate ids).
pub fn try_deployed_rules(
    jitr_ca_certificate_ids: &[&str],
) -> Result<Vec<DeployedRule>, RouteError> {
    if let Some(bad) = jitr_ca_certificate_ids
        .iter()
        .find(|id| id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(RouteError::InvalidCaCertificateId {
            id: (*bad).to_owned(),
        });
    }
    Ok(deployed_rules(jitr_ca_certificate_ids))
}

/// The deployed rules, compiled once: every statement parsed up front, so
/// routing a message parses nothing.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<(String, Function, Statement)>,
}

impl Router {
    /// Parses every rule's statement.
    pub fn new(rules: &[DeployedRule]) -> Result<Router, SqlError> {
        let rules = rules
            .iter()
            .map(|r| sql::parse(&r.sql).map(|s| (r.name.clone(), r.function, s)))
            .collect::<Result<_, _>>()?;
        Ok(Router { rules })
    }

    /// The output of every rule whose statement yields output for this
    /// message, with the function it goes to, in rule order.
    pub fn route(&self, ctx: &MessageContext<'_>) -> Result<Vec<(Function, Value)>, EvalError> {
        Ok(self
            .route_named(ctx)?
            .into_iter()
            .map(|(_, f, v)| (f, v))
            .collect())
    }

    /// [`route`](Self::route) with the name of the rule each output comes
    /// from (a Lambda permission names the rule that may invoke).
    pub fn route_named(
        &self,
        ctx: &MessageContext<'_>,
    ) -> Result<Vec<(&str, Function, Value)>, EvalError> {
        let mut out = Vec::new();
        for (name, function, stmt) in &self.rules {
            if let Some(v) = stmt.evaluate(ctx)? {
                out.push((name.as_str(), *function, v));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ctx<'a>(topic: &'a str, payload: &'a Value, client_id: &'a str) -> MessageContext<'a> {
        MessageContext {
            topic,
            payload,
            client_id,
            principal: "newcertid",
            timestamp_ms: 1,
        }
    }

    #[test]
    fn the_deployed_statements_are_exactly_these() {
        let rules = deployed_rules(&[CA]);
        let table: Vec<_> = rules
            .iter()
            .map(|r| (r.name.as_str(), r.function, r.sql.as_str()))
            .collect();
        assert_eq!(
            table,
            [
                (
                    "fleetcert_csr_res",
                    Function::CsrIssuer,
                    "SELECT clientid() as clientid, topic(3) as topicClientId, CSR, rotationId FROM 'management/topic/+/csr_res' WHERE topic(3) = clientid()"
                ),
                (
                    "fleetcert_crt_ack",
                    Function::Commit,
                    "SELECT clientid() as clientid, principal() as principal, topic(3) as topicClientId, rotationId, certificateId FROM 'management/topic/+/crt_ack' WHERE topic(3) = clientid()"
                ),
                (
                    "fleetcert_crt_err",
                    Function::ErrorHandler,
                    "SELECT clientid() as clientid, principal() as principal, topic(3) as topicClientId, error, rotationId FROM 'management/topic/+/crt_err' WHERE topic(3) = clientid()"
                ),
                (
                    "fleetcert_jitr_0123456789abcdef",
                    Function::JitrActivator,
                    "SELECT * FROM '$aws/events/certificates/registered/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'"
                ),
            ]
        );
        for r in &rules {
            assert!(is_valid_rule_name(&r.name), "{}", r.name);
            sql::parse(&r.sql).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        }
    }

    #[test]
    fn csr_res_goes_to_the_issuer_with_clientid_and_topic_client_id() {
        let router = Router::new(&deployed_rules(&[CA])).expect("compiles");
        let payload = json!({"CSR": "-----BEGIN CERTIFICATE REQUEST-----", "rotationId": "r1"});
        let routed = router
            .route(&ctx(
                "management/topic/thing-1/csr_res",
                &payload,
                "thing-1",
            ))
            .expect("routes");
        assert_eq!(
            routed,
            [(
                Function::CsrIssuer,
                json!({
                    "clientid": "thing-1",
                    "topicClientId": "thing-1",
                    "CSR": "-----BEGIN CERTIFICATE REQUEST-----",
                    "rotationId": "r1",
                })
            )]
        );
    }

    #[test]
    fn payload_cannot_spoof_clientid_principal_or_topic_client_id() {
        let router = Router::new(&deployed_rules(&[])).expect("compiles");
        let payload =
            json!({"clientid": "victim", "principal": "oldcert", "topicClientId": "victim"});
        let routed = router
            .route(&ctx(
                "management/topic/thing-1/crt_ack",
                &payload,
                "thing-1",
            ))
            .expect("routes");
        assert_eq!(
            routed,
            [(
                Function::Commit,
                json!({"clientid": "thing-1", "principal": "newcertid", "topicClientId": "thing-1"})
            )]
        );
    }

    #[test]
    fn a_message_on_another_devices_topic_reaches_no_function() {
        let router = Router::new(&deployed_rules(&[])).expect("compiles");
        let payload = json!({"error": "boom"});
        for kind in ["csr_res", "crt_ack", "crt_err"] {
            let routed = router
                .route(&ctx(
                    &format!("management/topic/other/{kind}"),
                    &payload,
                    "thing-1",
                ))
                .expect("routes");
            assert_eq!(routed, [], "{kind}");
        }
    }

    #[test]
    fn payload_fields_outside_the_contract_are_not_passed_on() {
        let router = Router::new(&deployed_rules(&[])).expect("compiles");
        let payload = json!({"CSR": "pem", "rotationId": "r1", "thingName": "victim", "extra": 1});
        let routed = router
            .route(&ctx(
                "management/topic/thing-1/csr_res",
                &payload,
                "thing-1",
            ))
            .expect("routes");
        assert_eq!(
            routed,
            [(
                Function::CsrIssuer,
                json!({"clientid": "thing-1", "topicClientId": "thing-1", "CSR": "pem", "rotationId": "r1"})
            )]
        );
    }

    #[test]
    fn jitr_events_go_only_to_the_jitr_rule_of_their_ca() {
        let router = Router::new(&deployed_rules(&[CA])).expect("compiles");
        let event = json!({"certificateId": "c", "caCertificateId": CA});
        let topic = topic::jitr_registered_topic(CA);
        let routed = router.route(&ctx(&topic, &event, "")).expect("routes");
        assert_eq!(routed, [(Function::JitrActivator, event.clone())]);
        let other = topic::jitr_registered_topic(&"f".repeat(64));
        assert_eq!(router.route(&ctx(&other, &event, "")), Ok(vec![]));
    }

    #[test]
    fn aws_topics_are_not_matched_by_the_management_rules() {
        let router = Router::new(&deployed_rules(&[])).expect("compiles");
        let payload = json!({"CSR": "x"});
        for t in [
            "$aws/things/thing-1/shadow/update",
            "$aws/events/certificates/registered/abc",
            "management/topic/thing-1/csr_req",
            "management/topic/thing-1/crt",
        ] {
            assert_eq!(
                router.route(&ctx(t, &payload, "thing-1")),
                Ok(vec![]),
                "{t}"
            );
        }
    }

    #[test]
    fn a_non_object_payload_passes_on_only_the_trusted_fields() {
        // IoT SQL: a field of a payload that is not a JSON object is
        // undefined, and an undefined item is left out; the handler then
        // rejects the event for its missing CSR.
        let router = Router::new(&deployed_rules(&[])).expect("compiles");
        let payload = json!("not an object");
        assert_eq!(
            router.route(&ctx(
                "management/topic/thing-1/csr_res",
                &payload,
                "thing-1"
            )),
            Ok(vec![(
                Function::CsrIssuer,
                json!({"clientid": "thing-1", "topicClientId": "thing-1"})
            )])
        );
    }

    #[test]
    fn bad_ca_ids_and_bad_sql_are_rejected() {
        assert_eq!(
            try_deployed_rules(&["abc/+"]),
            Err(RouteError::InvalidCaCertificateId { id: "abc/+".into() })
        );
        assert_eq!(try_deployed_rules(&[CA]).map(|r| r.len()), Ok(4));
        let bad = DeployedRule {
            name: "bad".into(),
            sql: "SELECT upper(a) AS u FROM 'a'".into(),
            function: Function::Commit,
            description: String::new(),
        };
        assert!(matches!(
            Router::new(&[bad]),
            Err(SqlError::UnsupportedFunction { offset: 7, .. })
        ));
    }

    #[test]
    fn rule_names() {
        assert!(is_valid_rule_name("fleetcert_csr_res"));
        assert!(!is_valid_rule_name("fleetcert-csr"));
        assert!(!is_valid_rule_name(""));
        assert!(!is_valid_rule_name(&"a".repeat(129)));
    }
}
