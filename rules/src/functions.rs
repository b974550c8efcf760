//! The Lambda functions fleetcert deploys, named once for `infra`,
//! `lambdas` and the emulator.

/// One deployed Lambda function (one binary in `lambdas/src/bin/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// SNS audit notification → one queue message per expiring certificate.
    AuditFanout,
    /// Queue batch → rotation row → `csr_req`.
    RotationStarter,
    /// `csr_res` rule → `CreateCertificateFromCsr` → `crt`.
    CsrIssuer,
    /// `crt_ack` rule → retire the old certificate.
    Commit,
    /// `crt_err` rule → clean up the new certificate, notify support.
    ErrorHandler,
    /// Schedule → expire stuck rotations.
    Sweeper,
    /// JITR registration event → check, attach, activate.
    JitrActivator,
}

impl Function {
    /// Every function.
    pub const ALL: [Function; 7] = [
        Function::AuditFanout,
        Function::RotationStarter,
        Function::CsrIssuer,
        Function::Commit,
        Function::ErrorHandler,
        Function::Sweeper,
        Function::JitrActivator,
    ];

    /// The binary name in `lambdas/src/bin/` and the asset folder name.
    pub const fn name(self) -> &'static str {
        match self {
            Function::AuditFanout => "audit-fanout",
            Function::RotationStarter => "rotation-starter",
            Function::CsrIssuer => "csr-issuer",
            Function::Commit => "commit",
            Function::ErrorHandler => "error-handler",
            Function::Sweeper => "sweeper",
            Function::JitrActivator => "jitr-activator",
        }
    }
}
