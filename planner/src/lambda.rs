//! The Lambda service on virtual time: per function, its reserved
//! concurrency of warm instances (each with its own
//! `lambdas::limits::Limited` over the account, at 1/N of every quota as
//! deployed), the invocation as a future of the **real handler**, its
//! timeout, and what it cost (invocations, GB-seconds).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambdas::config::Config as HandlerConfig;
use lambdas::handlers::rotation_starter::BatchOutcome;
use lambdas::handlers::{self, HandlerError, Outcome};
use lambdas::limits::Limited;
use rules::functions::Function;

use crate::clock::VirtualTimer;
use crate::cloud::SimPorts;
use crate::deployment::FunctionDeployment;

/// One warm instance: its own rate limiter state, as a Lambda container
/// keeps `Limited` between invocations.
#[derive(Debug)]
pub struct Instance {
    ports: Limited<SimPorts, VirtualTimer>,
    config: HandlerConfig,
}

/// What an invocation returned.
#[derive(Debug)]
pub enum Returned {
    /// An asynchronous invocation's handler result.
    Single(Result<Outcome, HandlerError>),
    /// rotation-starter's batch result.
    Batch(BatchOutcome),
}

/// A running invocation.
pub type Invocation = Pin<Box<dyn Future<Output = Returned> + Send>>;

/// One function's instances and backlog.
#[derive(Debug)]
pub struct FunctionState<E> {
    /// As deployed.
    pub deployment: FunctionDeployment,
    idle: Vec<Arc<Instance>>,
    created: u32,
    /// Invocations running.
    pub running: u32,
    /// Asynchronous events waiting for a free instance.
    pub backlog: VecDeque<E>,
    /// Invocations started.
    pub invocations: u64,
    /// Invocations that failed (error or timeout).
    pub errors: u64,
    /// Invocations that timed out.
    pub timeouts: u64,
    /// Sum of invocation durations, ns.
    pub busy_ns: u128,
    /// Events sent to the dead-letter queue.
    pub dead_letters: u64,
    /// Events that waited for concurrency.
    pub throttled_by_concurrency: u64,
    seed: u64,
}

impl<E> FunctionState<E> {
    /// A function with no instance yet.
    pub fn new(deployment: FunctionDeployment, seed: u64) -> Self {
        Self {
            deployment,
            idle: Vec::new(),
            created: 0,
            running: 0,
            backlog: VecDeque::new(),
            invocations: 0,
            errors: 0,
            timeouts: 0,
            busy_ns: 0,
            dead_letters: 0,
            throttled_by_concurrency: 0,
            seed,
        }
    }

    /// Whether an instance is free.
    pub fn has_capacity(&self) -> bool {
        self.running < self.deployment.concurrency
    }

    /// Takes a warm instance or starts one.
    pub fn acquire(&mut self, ports: &SimPorts, timer: &VirtualTimer) -> Arc<Instance> {
        self.running += 1;
        self.invocations += 1;
        self.idle.pop().unwrap_or_else(|| {
            self.created += 1;
            let mut limits = self.deployment.limits.clone();
            limits.jitter_seed = Some(self.seed ^ (u64::from(self.created) << 32));
            Arc::new(Instance {
                ports: Limited::with_timer(
                    SimPorts(Arc::clone(&ports.0), self.deployment.function),
                    &limits,
                    timer.clone(),
                ),
                config: self.deployment.config.clone(),
            })
        })
    }

    /// Gives an instance back after an invocation of `duration_ns`.
    pub fn release(&mut self, instance: Arc<Instance>, duration_ns: u64) {
        self.running = self.running.saturating_sub(1);
        self.busy_ns += u128::from(duration_ns);
        self.idle.push(instance);
    }

    /// Drops an instance whose invocation timed out (Lambda restarts it).
    pub fn discard(&mut self, duration_ns: u64) {
        self.running = self.running.saturating_sub(1);
        self.busy_ns += u128::from(duration_ns);
    }
}

/// The invocation of `function`'s real handler on `payload` at `now_ms`.
pub fn invoke(
    function: Function,
    instance: Arc<Instance>,
    payload: Arc<[u8]>,
    now_ms: i64,
) -> Invocation {
    Box::pin(async move {
        let (p, c) = (&instance.ports, &instance.config);
        match function {
            Function::AuditFanout => {
                Returned::Single(handlers::audit_fanout::handle(p, c, &payload, now_ms).await)
            }
            Function::RotationStarter => {
                Returned::Batch(handlers::rotation_starter::handle(p, c, &payload, now_ms).await)
            }
            Function::CsrIssuer => {
                Returned::Single(handlers::csr_issuer::handle(p, c, &payload, now_ms).await)
            }
            Function::Commit => {
                Returned::Single(handlers::commit::handle(p, c, &payload, now_ms).await)
            }
            Function::ErrorHandler => {
                Returned::Single(handlers::error_handler::handle(p, c, &payload, now_ms).await)
            }
            Function::Sweeper => {
                Returned::Single(handlers::sweeper::handle(p, c, &payload, now_ms).await)
            }
            Function::JitrActivator => {
                Returned::Single(handlers::jitr_activator::handle(p, c, &payload, now_ms).await)
            }
        }
    })
}
