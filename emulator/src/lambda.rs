//! The emulated Lambda service: fleetcert's handlers run in process on the
//! in-memory adapters, with what AWS checks around every invocation.
//!
//! - **Who may invoke**: a topic rule only when an `AWS::Lambda::Permission`
//!   lets `iot.amazonaws.com` invoke the function from that rule's ARN;
//!   SNS and EventBridge the same for their topic and schedule; the SQS
//!   event source only when a mapping from that queue exists and the
//!   function's role may receive, delete and read the queue's attributes
//!   (the Lambda service polls with it). A refused rule invocation runs the
//!   rule's error action (SQS, with the rule's error role).
//! - **Start-up**: a cold start writes the function's logs with its role
//!   (`logs:CreateLogStream`, `logs:PutLogEvents`; refused: the logs are
//!   lost, the function still runs, as on AWS) and, for functions that
//!   publish, looks up the iot-data endpoint (`iot:DescribeEndpoint`;
//!   refused: the invocation fails).
//! - **Every port call** through [`Authorized`]: the function's role as the
//!   synthesized template defines it.
//! - **Retries**: an asynchronous invocation (rules, SNS, schedules) is
//!   retried `retries` times, then sent to the function's dead-letter queue
//!   with its role (`sqs:SendMessage`); an SQS-driven one is not retried
//!   here (the queue redelivers).
//!
//! Time is the wall clock plus an offset tests can move
//! ([`LambdaService::advance_clock`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambdas::config::Config as HandlerConfig;
use lambdas::handlers::{self, HandlerError, Outcome};
use lambdas::memory::MemoryPorts;
use rules::functions::Function;
use rules::iam::wildcard;

use crate::iam::{AccessLog, Authorized, Principal, ResourceArns, queue_arn};
use crate::kms::Kms;
use crate::template::Deployment;

/// What invokes a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A topic rule's Lambda action, by rule name (asynchronous).
    Rule(String),
    /// An SNS subscription of this topic ARN (asynchronous).
    Sns(String),
    /// The function's EventBridge schedule (asynchronous).
    Schedule,
    /// The SQS event source of this queue ARN (synchronous).
    Queue(String),
}

impl Trigger {
    fn is_async(&self) -> bool {
        !matches!(self, Trigger::Queue(_))
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Rule(name) => write!(f, "topic rule {name}"),
            Trigger::Sns(topic) => write!(f, "sns topic {topic}"),
            Trigger::Schedule => f.write_str("schedule"),
            Trigger::Queue(queue) => write!(f, "sqs queue {queue}"),
        }
    }
}

/// Why an invocation did not happen or did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The service refused to invoke (no permission, no event-source
    /// mapping, the function or its role not deployed).
    #[error("{function} was not invoked by {trigger}: {reason}")]
    Refused {
        /// The function.
        function: &'static str,
        /// What tried.
        trigger: String,
        /// Why not.
        reason: String,
    },
    /// The function failed to start on every attempt.
    #[error("{function} failed to start: {reason}")]
    Init {
        /// The function.
        function: &'static str,
        /// Why.
        reason: String,
    },
    /// The handler failed on every attempt.
    #[error("{function} failed: {source}")]
    Handler {
        /// The function.
        function: &'static str,
        /// The last error.
        source: HandlerError,
    },
}

/// What one successful invocation returned.
#[derive(Debug)]
pub struct Invoked {
    /// The handler's outcome.
    pub outcome: Outcome,
    /// For rotation-starter: the message ids to redeliver.
    pub batch_item_failures: Vec<String>,
}

/// An event that every attempt failed on, in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The function.
    pub function: Function,
    /// The queue's ARN.
    pub queue_arn: String,
    /// The event.
    pub payload: Vec<u8>,
}

/// A rule action that failed, as the rule's error action recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule.
    pub rule: String,
    /// The function it could not invoke.
    pub function: Function,
    /// Why.
    pub reason: String,
}

/// Counters of the invocations.
#[derive(Debug, Default)]
pub struct Counters {
    /// Attempts (first tries and retries).
    pub invocations: AtomicU64,
    /// Retries after a failed attempt.
    pub retries: AtomicU64,
    /// Invocations that failed on every attempt or were refused.
    pub failures: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Functions whose start-up succeeded (warm).
    warm: BTreeSet<Function>,
    /// Functions whose logs reached their log group / were lost.
    logs_delivered: BTreeSet<Function>,
    logs_lost: BTreeSet<Function>,
    dead_letters: Vec<DeadLetter>,
    rule_errors: Vec<RuleError>,
    /// The next this many invocations of a function fail at the service.
    service_faults: BTreeMap<Function, u32>,
}

/// What a deployment gives the service: the template, each function's
/// principal and resources, the KMS keys. Replaced whole by a redeploy.
#[derive(Debug)]
struct Deployed {
    deployment: Arc<Deployment>,
    principals: BTreeMap<Function, (Arc<Principal>, Arc<ResourceArns>)>,
    kms: Arc<Kms>,
}

impl Deployed {
    fn new(deployment: Deployment, log: &AccessLog) -> Deployed {
        let wiring = deployment.wiring();
        let principals = wiring
            .functions
            .iter()
            .filter_map(|(f, def)| {
                // a role the Lambda service may not assume gives no
                // credentials: the function cannot start
                let role = wiring
                    .roles
                    .get(&def.role)
                    .filter(|r| r.trusts("lambda.amazonaws.com"))?;
                let principal = Principal {
                    caller: f.name().to_owned(),
                    role: role.logical_id.clone(),
                    arn: role.arn.clone(),
                    policies: role.policies.clone(),
                    log: log.clone(),
                };
                let arns = ResourceArns::from_environment(deployment.scope(), &def.environment);
                Some((*f, (Arc::new(principal), Arc::new(arns))))
            })
            .collect();
        let kms = Arc::new(Kms::new(
            deployment.scope(),
            wiring.keys.clone(),
            wiring.topic_keys.clone(),
            log.clone(),
        ));
        Deployed {
            deployment: Arc::new(deployment),
            principals,
            kms,
        }
    }
}

#[derive(Debug)]
struct Inner {
    ports: MemoryPorts,
    deployed: std::sync::RwLock<Arc<Deployed>>,
    config: HandlerConfig,
    retries: u32,
    retry_delay: Duration,
    counters: Counters,
    log: AccessLog,
    clock_offset_ms: AtomicI64,
    state: Mutex<State>,
}

/// The emulated Lambda service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LambdaService {
    inner: Arc<Inner>,
}

/// Milliseconds since the Unix epoch on the wall clock.
fn wall_ms() -> i64 {
    i64::try_from(crate::registry::now_ms()).unwrap_or(i64::MAX)
}

impl LambdaService {
    /// The service for `deployment`'s functions on `ports`.
    pub fn new(
        ports: MemoryPorts,
        deployment: Deployment,
        config: HandlerConfig,
        retries: u32,
        retry_delay: Duration,
    ) -> LambdaService {
        let log = AccessLog::default();
        let deployed = Deployed::new(deployment, &log);
        LambdaService {
            inner: Arc::new(Inner {
                ports,
                deployed: std::sync::RwLock::new(Arc::new(deployed)),
                config,
                retries,
                retry_delay,
                counters: Counters::default(),
                log,
                clock_offset_ms: AtomicI64::new(0),
                state: Mutex::default(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The in-memory adapters behind the functions.
    pub fn ports(&self) -> &MemoryPorts {
        &self.inner.ports
    }

    fn deployed(&self) -> Arc<Deployed> {
        self.inner
            .deployed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The deployment the service enforces.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.deployed().deployment.clone()
    }

    /// Enforces `deployment` (its roles, permissions, keys and wiring)
    /// from the next invocation on, as a stack update does; warm
    /// functions stay warm.
    pub fn redeploy(&self, deployment: Deployment) {
        let deployed = Deployed::new(deployment, &self.inner.log);
        *self
            .inner
            .deployed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(deployed);
    }

    /// The handlers' configuration.
    pub fn config(&self) -> &HandlerConfig {
        &self.inner.config
    }

    /// Every refused call so far (IAM denials of any principal).
    pub fn access_log(&self) -> &AccessLog {
        &self.inner.log
    }

    /// The template's KMS keys and the topics they encrypt, as SNS uses
    /// them.
    pub fn kms(&self) -> Arc<Kms> {
        self.deployed().kms.clone()
    }

    /// The invocation counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Now, as the handlers see it (wall clock plus the test offset).
    pub fn now_ms(&self) -> i64 {
        wall_ms().saturating_add(self.inner.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the handlers' clock forward (tests: deadlines, re-send marks).
    pub fn advance_clock(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.inner.clock_offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Makes the next `count` invocations of `function` fail in the
    /// Lambda service itself (throttled or unavailable), before the
    /// handler runs.
    pub fn fail_next_invocations(&self, function: Function, count: u32) {
        *self.state().service_faults.entry(function).or_insert(0) += count;
    }

    /// Events every attempt failed on, sent to a dead-letter queue.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state().dead_letters.clone()
    }

    /// Rule actions that failed and reached their rule's error action.
    pub fn rule_errors(&self) -> Vec<RuleError> {
        self.state().rule_errors.clone()
    }

    /// Whether `function`'s logs reached its log group (it ran, and its
    /// role may write them).
    pub fn logs_delivered(&self, function: Function) -> bool {
        let s = self.state();
        s.logs_delivered.contains(&function) && !s.logs_lost.contains(&function)
    }

    /// The principal (role) and resource ARNs of `function`.
    pub fn principal(&self, function: Function) -> Option<Arc<Principal>> {
        self.deployed()
            .principals
            .get(&function)
            .map(|(p, _)| p.clone())
    }

    /// The ARN of the queue the functions send rotation work to.
    pub fn work_queue_arn(&self) -> Option<String> {
        let deployed = self.deployed();
        let (_, arns) = deployed.principals.get(&Function::AuditFanout)?;
        Some(arns.queue_arn().to_owned())
    }

    /// A principal for a role of the template that AWS IoT assumes (the
    /// audit roles, a rule's error role), or `None` when it is not
    /// deployed or its trust policy does not let `iot.amazonaws.com`
    /// assume it.
    pub fn role_principal(&self, role: &str, caller: &str) -> Option<Principal> {
        let deployed = self.deployed();
        let r = deployed
            .deployment
            .wiring()
            .roles
            .get(role)
            .filter(|r| r.trusts("iot.amazonaws.com"))?;
        Some(Principal {
            caller: caller.to_owned(),
            role: r.logical_id.clone(),
            arn: r.arn.clone(),
            policies: r.policies.clone(),
            log: self.inner.log.clone(),
        })
    }

    fn refuse(&self, function: Function, trigger: &Trigger, reason: String) -> InvokeError {
        tracing::warn!(function = function.name(), %trigger, %reason, "invocation refused");
        self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        if let Trigger::Rule(rule) = trigger {
            self.rule_error_action(rule, function, &reason);
        }
        InvokeError::Refused {
            function: function.name(),
            trigger: trigger.to_string(),
            reason,
        }
    }

    /// The rule's SQS error action, sent with the rule's error role.
    fn rule_error_action(&self, rule: &str, function: Function, reason: &str) {
        let deployed = self.deployed();
        let Some(action) = deployed.deployment.wiring().rule_errors.get(rule) else {
            tracing::warn!(rule, "rule action failed and the rule has no error action");
            return;
        };
        let queue = queue_arn(deployed.deployment.scope(), &action.queue_url);
        let allowed = self
            .role_principal(&action.role, &format!("topic rule {rule}"))
            .is_some_and(|p| p.authorize("sqs:SendMessage", &[("queue", queue)]).is_ok());
        if allowed {
            self.state().rule_errors.push(RuleError {
                rule: rule.to_owned(),
                function,
                reason: reason.to_owned(),
            });
        } else {
            tracing::warn!(rule, "rule error action refused: the failure is lost");
        }
    }

    /// Whether `trigger` may invoke `function`: the resource policy (an
    /// `AWS::Lambda::Permission`) or the event-source mapping and the
    /// role's SQS actions.
    fn admit(&self, trigger: &Trigger, function: Function) -> Result<(), String> {
        let deployed = self.deployed();
        let d = &deployed.deployment;
        let w = d.wiring();
        if !w.functions.contains_key(&function) {
            return Err("the function is not in the template".into());
        }
        let scope = d.scope();
        let permitted = |service: &str, source: &str| {
            w.permissions.iter().any(|p| {
                p.function == function
                    && p.principal == service
                    && (p.action == "lambda:InvokeFunction" || p.action == "lambda:*")
                    && p.source_arn
                        .as_deref()
                        .is_none_or(|a| wildcard(a, source, false))
                    && p.source_account
                        .as_deref()
                        .is_none_or(|a| a == scope.account)
            })
        };
        match trigger {
            Trigger::Rule(rule) => {
                let arn = format!(
                    "arn:{}:iot:{}:{}:rule/{rule}",
                    scope.partition, scope.region, scope.account
                );
                if permitted("iot.amazonaws.com", &arn) {
                    Ok(())
                } else {
                    Err(format!(
                        "no lambda permission lets iot.amazonaws.com invoke it from {arn}"
                    ))
                }
            }
            Trigger::Sns(topic) => {
                if !w
                    .subscriptions
                    .iter()
                    .any(|(t, f)| t == topic && *f == function)
                {
                    return Err(format!("not subscribed to {topic}"));
                }
                if permitted("sns.amazonaws.com", topic) {
                    Ok(())
                } else {
                    Err(format!(
                        "no lambda permission lets sns.amazonaws.com invoke it from {topic}"
                    ))
                }
            }
            Trigger::Schedule => {
                let schedules: Vec<&String> = w
                    .schedules
                    .iter()
                    .filter(|(_, f)| *f == function)
                    .map(|(arn, _)| arn)
                    .collect();
                if schedules.is_empty() {
                    return Err("no schedule targets it".into());
                }
                if schedules
                    .iter()
                    .any(|arn| permitted("events.amazonaws.com", arn))
                {
                    Ok(())
                } else {
                    Err("no lambda permission lets events.amazonaws.com invoke it from its schedule".into())
                }
            }
            Trigger::Queue(queue) => {
                if !w
                    .event_sources
                    .iter()
                    .any(|(q, f)| q == queue && *f == function)
                {
                    return Err(format!("no event-source mapping from {queue}"));
                }
                let (principal, _) = deployed
                    .principals
                    .get(&function)
                    .ok_or("the function has no role")?;
                for action in [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                ] {
                    principal
                        .authorize(action, &[("queue", queue.clone())])
                        .map_err(|d| d.to_string())?;
                }
                Ok(())
            }
        }
    }

    /// A cold start: the logs and, for publishers, the iot-data endpoint.
    fn start(&self, function: Function) -> Result<(), String> {
        if self.state().warm.contains(&function) {
            return Ok(());
        }
        let deployed = self.deployed();
        let (principal, _) = deployed.principals.get(&function).ok_or(
            "the function's role is not in the template or does not trust lambda.amazonaws.com",
        )?;
        let def = &deployed.deployment.wiring().functions[&function];
        let scope = deployed.deployment.scope();
        let group = def
            .log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{}", def.logical_id));
        let stream = format!(
            "arn:{}:logs:{}:{}:log-group:{group}:log-stream:emulated",
            scope.partition, scope.region, scope.account
        );
        let logs_ok = ["logs:CreateLogStream", "logs:PutLogEvents"]
            .iter()
            .all(|a| {
                principal
                    .authorize(a, &[("log-stream", stream.clone())])
                    .is_ok()
            });
        {
            let mut s = self.state();
            if logs_ok {
                s.logs_delivered.insert(function);
            } else {
                s.logs_lost.insert(function);
            }
        }
        if handlers::publishes(function) {
            principal
                .authorize("iot:DescribeEndpoint", &[])
                .map_err(|d| d.to_string())?;
        }
        self.state().warm.insert(function);
        Ok(())
    }

    /// Invokes `function` with `payload` as `trigger` does, with the checks,
    /// retries and dead-lettering above.
    ///
    /// # Errors
    /// [`InvokeError`].
    pub async fn invoke(
        &self,
        trigger: &Trigger,
        function: Function,
        payload: Vec<u8>,
    ) -> Result<Invoked, InvokeError> {
        let faulted = {
            let mut s = self.state();
            match s.service_faults.get_mut(&function) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if faulted {
            return Err(self.refuse(
                function,
                trigger,
                "injected fault: the Lambda service is unavailable".into(),
            ));
        }
        if let Err(reason) = self.admit(trigger, function) {
            return Err(self.refuse(function, trigger, reason));
        }
        let retries = if trigger.is_async() {
            self.inner.retries
        } else {
            0
        };
        let mut delay = self.inner.retry_delay;
        let mut attempt = 0;
        let failure = loop {
            self.inner
                .counters
                .invocations
                .fetch_add(1, Ordering::Relaxed);
            let result = match self.start(function) {
                Err(reason) => Err(InvokeError::Init {
                    function: function.name(),
                    reason,
                }),
                Ok(()) => self.run(function, &payload).await,
            };
            match result {
                Ok(invoked) => return Ok(invoked),
                Err(e) if attempt < retries => {
                    attempt += 1;
                    self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(function = function.name(), error = %e, attempt, "retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                Err(e) => break e,
            }
        };
        self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(function = function.name(), error = %failure, "invocation failed on every attempt");
        if trigger.is_async() {
            self.dead_letter(function, payload);
        }
        Err(failure)
    }

    fn dead_letter(&self, function: Function, payload: Vec<u8>) {
        let deployed = self.deployed();
        let def = &deployed.deployment.wiring().functions[&function];
        let Some(queue_arn) = def.dead_letter_arn.clone() else {
            tracing::warn!(
                function = function.name(),
                "no dead-letter queue: the event is lost"
            );
            return;
        };
        let Some((principal, _)) = deployed.principals.get(&function) else {
            return;
        };
        if principal
            .authorize("sqs:SendMessage", &[("queue", queue_arn.clone())])
            .is_ok()
        {
            self.state().dead_letters.push(DeadLetter {
                function,
                queue_arn,
                payload,
            });
        } else {
            tracing::warn!(
                function = function.name(),
                "dead-letter send refused: the event is lost"
            );
        }
    }

    async fn run(&self, function: Function, payload: &[u8]) -> Result<Invoked, InvokeError> {
        let deployed = self.deployed();
        let (principal, arns) =
            deployed
                .principals
                .get(&function)
                .ok_or_else(|| InvokeError::Init {
                    function: function.name(),
                    reason: "the function has no role in the template".into(),
                })?;
        let p = Authorized::new(
            self.inner.ports.clone(),
            principal.clone(),
            arns.clone(),
            deployed.kms.clone(),
        );
        let c = &self.inner.config;
        let now = self.now_ms();
        let done = |outcome| Invoked {
            outcome,
            batch_item_failures: Vec::new(),
        };
        let result = match function {
            Function::CsrIssuer => handlers::csr_issuer::handle(&p, c, payload, now)
                .await
                .map(done),
            Function::Commit => handlers::commit::handle(&p, c, payload, now)
                .await
                .map(done),
            Function::ErrorHandler => handlers::error_handler::handle(&p, c, payload, now)
                .await
                .map(done),
            Function::JitrActivator => handlers::jitr_activator::handle(&p, c, payload, now)
                .await
                .map(done),
            Function::AuditFanout => handlers::audit_fanout::handle(&p, c, payload, now)
                .await
                .map(done),
            Function::Sweeper => handlers::sweeper::handle(&p, c, payload, now)
                .await
                .map(done),
            Function::RotationStarter => {
                let batch = handlers::rotation_starter::handle(&p, c, payload, now).await;
                let failures: Vec<String> = batch
                    .response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                Ok(Invoked {
                    outcome: Outcome::Done {
                        summary: format!(
                            "{} messages, {} to redeliver",
                            batch.outcomes.len(),
                            failures.len()
                        ),
                    },
                    batch_item_failures: failures,
                })
            }
        };
        result.map_err(|source| InvokeError::Handler {
            function: function.name(),
            source,
        })
    }
}
