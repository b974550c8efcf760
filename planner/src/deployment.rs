//! The deployed system as the synthesized template says it is: each
//! function's reserved concurrency, timeout, memory and environment (read
//! back into `lambdas::config::Config` and `lambdas::limits::LimitsConfig`
//! by the parsers the Lambda mains use), the rotation queue's visibility
//! timeout, redrive and retention, the event source's batch size, and the
//! sweeper's schedule. Nothing here is typed twice: change the stack and
//! the plan changes with it.

use std::collections::BTreeMap;
use std::time::Duration;

use lambdas::config::Config as HandlerConfig;
use lambdas::limits::{LimitsConfig, QUOTA_PREFIX};
use lambdas::ports::Operation;
use rules::functions::Function;
use serde_json::Value;

use crate::options::{PlanError, PlanOptions, SQS_MAX_IN_FLIGHT};

/// SQS's default message retention when a queue sets none: 4 days
/// (`MessageRetentionPeriod`, Amazon SQS API reference).
const SQS_DEFAULT_RETENTION_S: u64 = 345_600;

/// One function as deployed.
#[derive(Debug, Clone)]
pub struct FunctionDeployment {
    /// Which.
    pub function: Function,
    /// `ReservedConcurrentExecutions`.
    pub concurrency: u32,
    /// `Timeout`.
    pub timeout: Duration,
    /// `MemorySize`, MB (the GB-seconds of the cost estimate).
    pub memory_mb: u32,
    /// Its handler configuration, from its environment.
    pub config: HandlerConfig,
    /// Its rate limits, from its environment.
    pub limits: LimitsConfig,
}

/// The deployed system the plan simulates.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Every function.
    pub functions: BTreeMap<Function, FunctionDeployment>,
    /// The event source mapping's `BatchSize`.
    pub batch_size: usize,
    /// The rotation queue's `VisibilityTimeout`.
    pub visibility_timeout: Duration,
    /// Its redrive policy's `maxReceiveCount`.
    pub max_receive_count: u32,
    /// Its `MessageRetentionPeriod` (SQS's default when absent).
    pub retention: Duration,
    /// The sweeper schedule's period.
    pub sweep_period: Duration,
    /// The audit period (Device Defender's scheduled audit).
    pub audit_period: Duration,
    /// The audit's expiring-certificate threshold.
    pub threshold: Duration,
}

fn invalid(field: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl Deployment {
    /// Synthesizes the stack of `options.config` in memory and reads it.
    ///
    /// # Errors
    /// A [`PlanError`] naming the field when the configuration or the
    /// quotas cannot work.
    pub fn of(options: &PlanOptions) -> Result<Deployment, PlanError> {
        let validated = options.check()?;
        let template = infra::assembly::template(&validated, &infra::assembly::unbuilt_assets())
            .map_err(|e| invalid("--config", e.to_string()))?;
        let template = serde_json::to_value(&template).unwrap_or(Value::Null);
        Self::from_template(&template, options)
    }

    /// Reads a synthesized template.
    ///
    /// # Errors
    /// A [`PlanError`] when the template lacks what the plan needs.
    pub fn from_template(template: &Value, options: &PlanOptions) -> Result<Deployment, PlanError> {
        let resources = template["Resources"]
            .as_object()
            .ok_or_else(|| invalid("template", "no Resources"))?;
        let of_type = |ty: &'static str| {
            resources
                .iter()
                .filter(move |(_, r)| r["Type"] == ty)
                .map(|(id, r)| (id.as_str(), &r["Properties"]))
        };
        let mut functions = BTreeMap::new();
        for (id, p) in of_type("AWS::Lambda::Function") {
            let Some(function) = p["Description"]
                .as_str()
                .and_then(|d| d.strip_prefix("fleetcert "))
                .and_then(|name| Function::ALL.into_iter().find(|f| f.name() == name))
            else {
                continue;
            };
            let env: BTreeMap<String, String> = p["Environment"]["Variables"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    // a Ref (table, queue, topic, policy) names a resource:
                    // its logical id is enough in memory
                    let value = v.as_str().map_or_else(
                        || format!("sim:{}", v["Ref"].as_str().unwrap_or(id)),
                        str::to_owned,
                    );
                    (k.clone(), value)
                })
                .collect();
            let config = HandlerConfig::from_lookup(|k| env.get(k).cloned())
                .map_err(|e| invalid(function.name(), e.to_string()))?;
            let mut vars: Vec<(String, String)> =
                env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (op, rate) in &options.quotas {
                vars.push((format!("{QUOTA_PREFIX}{}", op.name()), rate.to_string()));
            }
            let limits = LimitsConfig::from_vars(vars)
                .map_err(|e| invalid(function.name(), e.to_string()))?;
            let number = |key: &str, default: u64| p[key].as_u64().unwrap_or(default);
            functions.insert(
                function,
                FunctionDeployment {
                    function,
                    concurrency: u32::try_from(number("ReservedConcurrentExecutions", 1000))
                        .unwrap_or(1000)
                        .max(1),
                    timeout: Duration::from_secs(number("Timeout", 3)),
                    memory_mb: u32::try_from(number("MemorySize", 128)).unwrap_or(128),
                    config,
                    limits,
                },
            );
        }
        for f in Function::ALL {
            if !functions.contains_key(&f) {
                return Err(invalid(
                    "template",
                    format!("function {} is not deployed", f.name()),
                ));
            }
        }
        let (_, mapping) = of_type("AWS::Lambda::EventSourceMapping")
            .next()
            .ok_or_else(|| invalid("template", "no SQS event source mapping"))?;
        let batch_size = usize::try_from(mapping["BatchSize"].as_u64().unwrap_or(10)).unwrap_or(10);
        let queue_id = mapping["EventSourceArn"]["Fn::GetAtt"][0]
            .as_str()
            .ok_or_else(|| invalid("template", "the event source is not a queue of the stack"))?;
        let queue = &resources[queue_id]["Properties"];
        let visibility_timeout =
            Duration::from_secs(queue["VisibilityTimeout"].as_u64().unwrap_or(30));
        let max_receive_count = u32::try_from(
            queue["RedrivePolicy"]["maxReceiveCount"]
                .as_u64()
                .unwrap_or(u64::MAX),
        )
        .unwrap_or(u32::MAX);
        let retention = Duration::from_secs(
            queue["MessageRetentionPeriod"]
                .as_u64()
                .unwrap_or(SQS_DEFAULT_RETENTION_S),
        );
        let sweep_period = of_type("AWS::Events::Rule")
            .filter_map(|(_, p)| p["ScheduleExpression"].as_str())
            .find_map(parse_rate)
            .ok_or_else(|| invalid("template", "no sweeper schedule"))?;
        let audit_period = of_type("AWS::IoT::ScheduledAudit")
            .filter_map(|(_, p)| p["Frequency"].as_str())
            .find_map(|f| match f {
                "DAILY" => Some(1),
                "WEEKLY" => Some(7),
                "BIWEEKLY" => Some(14),
                "MONTHLY" => Some(30),
                _ => None,
            })
            .map(|days| Duration::from_secs(days * 86_400))
            .ok_or_else(|| invalid("template", "no scheduled audit"))?;
        let deployment = Deployment {
            functions,
            batch_size,
            visibility_timeout,
            max_receive_count,
            retention,
            sweep_period,
            audit_period,
            threshold: Duration::from_secs(
                u64::from(options.config.audit.expiring_threshold_days) * 86_400,
            ),
        };
        deployment.check()?;
        Ok(deployment)
    }

    /// The function's deployment.
    pub fn function(&self, f: Function) -> &FunctionDeployment {
        &self.functions[&f]
    }

    fn check(&self) -> Result<(), PlanError> {
        let starter = self.function(Function::RotationStarter);
        let in_flight = u64::from(starter.concurrency) * self.batch_size as u64;
        if in_flight > SQS_MAX_IN_FLIGHT {
            return Err(invalid(
                "rotation-starter reserved concurrency × batch size",
                format!(
                    "{in_flight} messages in flight is more than a standard SQS queue holds ({SQS_MAX_IN_FLIGHT})"
                ),
            ));
        }
        let deadline = Duration::from_millis(
            u64::try_from(starter.config.rotation_deadline_ms).unwrap_or(u64::MAX),
        );
        if deadline >= self.threshold {
            return Err(invalid(
                "rotation.deadline_hours",
                "the rotation deadline is not shorter than the audit threshold",
            ));
        }
        for op in Operation::ALL {
            let rate = starter.limits.account_rate(op);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(&format!("--quota {op}"), "must be positive"));
            }
        }
        Ok(())
    }
}

/// `rate(15 minutes)` → 15 minutes.
fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.split_once(' ')?;
    let n: u64 = n.trim().parse().ok()?;
    let secs = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_stack_is_read_from_its_template() {
        let d = Deployment::of(&PlanOptions::new(10)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.batch_size, 10);
        assert_eq!(d.sweep_period, Duration::from_secs(900));
        assert_eq!(d.audit_period, Duration::from_secs(86_400));
        assert_eq!(d.max_receive_count, 5);
        let issuer = d.function(Function::CsrIssuer);
        assert_eq!(issuer.limits.concurrency, issuer.concurrency);
        assert_eq!(parse_rate("rate(1 hour)"), Some(Duration::from_secs(3600)));
    }
}
