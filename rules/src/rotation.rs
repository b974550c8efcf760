//! The rotation state machine: pure transitions, no I/O, no clock reads.
//!
//! A [`Rotation`] is one row of rotation state (the lambdas store it in
//! DynamoDB, serialized with serde, camelCase, the state flattened into the
//! row). [`step`] takes the row as it was read and one [`Event`], and either
//! returns a [`Transition`] (the row to write, with a conditional write on the
//! row as it was read, and the [`Action`]s to take, in order) or a
//! [`Rejection`], which changes nothing and carries a reason for the log.
//!
//! ```text
//! REQUESTED --csr_res--> ISSUING --certificate created--> ISSUED --ack on new--> COMMITTED
//!     |                     |                                |
//!     +-- crt_err / sweep --+-------- crt_err / sweep -------+--> FAILED / EXPIRED
//! ```
//!
//! `ISSUING` is the claim written (conditionally, on `REQUESTED`) *before*
//! `CreateCertificateFromCsr` is called: that API is not idempotent, so the
//! claim is what makes "at most one certificate per rotation" hold under
//! duplicate `csr_res` deliveries.
//!
//! # Outcomes of duplicate and out-of-order events
//!
//! | state | event | outcome |
//! |---|---|---|
//! | any | `rotationId` given and different | [`Rejection::RotationIdMismatch`] |
//! | REQUESTED | `csr_res` | ISSUING (claims the fingerprint), [`Action::CreateCertificateFromCsr`] |
//! | open | `csr_res` past the deadline | [`Rejection::DeadlinePassed`] (the sweeper cleans up) |
//! | ISSUING | `csr_res`, same key | [`Rejection::IssueInProgress`] (the invocation holding the claim publishes `crt`) |
//! | ISSUING / ISSUED | `csr_res`, different key | [`Rejection::DifferentKey`]: the device must use the certificate already issued for the first key |
//! | ISSUED | `csr_res`, same key | attach (idempotent) and [`Action::ResendCertificate`]; never a second create |
//! | ISSUING | certificate created for the claimed key | ISSUED, attach the old certificate's policies and the thing, publish `crt` |
//! | ISSUED | certificate created again with the recorded id | resume: attach and publish again (a retry after a partial failure) |
//! | any | certificate created that the row does not record (lost race, unclaimed, late after FAILED/EXPIRED) | state unchanged, [`Action::DeleteNewCertificate`] for it |
//! | REQUESTED / ISSUING | ack | [`Rejection::AckBeforeIssued`] |
//! | ISSUED / COMMITTED | ack on the old certificate | [`Rejection::AckOnOldPrincipal`]: the old certificate is retired only on an ack over the new one |
//! | ISSUED | ack on the new certificate | COMMITTED, [`Action::RetireOldCertificate`] (even past the deadline: the device is already using the new certificate) |
//! | EXPIRED, new certificate kept | ack on the new certificate | COMMITTED, [`Action::RetireOldCertificate`]: the evidence the sweeper lacked |
//! | COMMITTED | ack on the new certificate again | no-op: no change, no actions |
//! | REQUESTED / ISSUING | `crt_err` | FAILED, notify support (a certificate created later is deleted by the row above) |
//! | ISSUED | `crt_err` | FAILED, [`Action::DeleteNewCertificate`], notify support |
//! | COMMITTED / FAILED / EXPIRED | `crt_err`, `csr_res`, late ack (but the EXPIRED-kept row above) | [`Rejection::RotationClosed`] |
//! | REQUESTED / ISSUING, past the deadline | sweep | EXPIRED, notify support (a certificate created later is deleted by the row above) |
//! | ISSUED, past the deadline, new certificate read as not ACTIVE | sweep | EXPIRED, delete the new certificate (never sent), notify support |
//! | ISSUED, past the deadline, otherwise | sweep | EXPIRED with the new certificate **kept**, both certificates active, notify support: the device may have acked and dropped its old key while the commit never landed |
//! | open, before the deadline | sweep | [`Rejection::NotDue`] |
//!
//! The invariants of DESIGN.md are checkable with
//! [`Rotation::certificates_the_device_may_hold`],
//! [`Rotation::certificates_to_remove`] and [`check_invariants`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// One rotation of one thing's certificate: the state row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Unique id of this rotation, sent to the device in `csr_req`.
    pub rotation_id: String,
    /// The thing (and MQTT client id) whose certificate is rotated.
    pub thing_name: String,
    /// The certificate being replaced.
    pub old_certificate_id: String,
    /// Where the rotation is; flattened into the row (`"state": "ISSUED"`, ...).
    #[serde(flatten)]
    pub state: RotationState,
    /// When the rotation was requested (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// After this instant (ms since the Unix epoch) the sweeper expires the
    /// rotation; `csr_res` is no longer accepted.
    pub deadline_ms: i64,
    /// Number of `csr_res` messages accepted for this rotation: the one that
    /// led to the certificate, plus each duplicate that re-sent it.
    pub attempts: u32,
    /// A closed row whose [`cleanup_actions`](Rotation::cleanup_actions)
    /// are not confirmed done: the handler that closed it clears this once
    /// they succeed; until then the sweeper finds the row (after its
    /// deadline) and runs them again, so a cleanup whose every retry failed
    /// is not forgotten. Absent (false) in rows written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleanup_pending: bool,
    /// When the sweeper last sent this state's pending message (`csr_req`
    /// or `crt`) again (ms since the Unix epoch); cleared by every
    /// transition. See [`Rotation::resend_mark`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_at_ms: Option<i64>,
}

/// The points of a rotation's time (fractions from its start to its
/// deadline) at which the sweeper sends the message an open rotation waits
/// for again: once at half its time, once more at three quarters.
pub const RESEND_MARKS: [(i64, i64); 2] = [(1, 2), (3, 4)];

/// The state of a [`Rotation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum RotationState {
    /// `csr_req` was sent; waiting for the device's `csr_res`.
    Requested,
    /// A `csr_res` was accepted and its key claimed; `CreateCertificateFromCsr`
    /// is being called. Written before the call so that a duplicate `csr_res`
    /// never creates a second certificate.
    Issuing {
        /// Public-key fingerprint of the claimed CSR.
        csr_fingerprint: String,
    },
    /// The new certificate exists, is attached and was sent to the device in `crt`.
    Issued {
        /// Id of the new certificate.
        new_certificate_id: String,
        /// Public-key fingerprint of the CSR it was created from.
        csr_fingerprint: String,
    },
    /// The device acked on the new certificate; the old one is retired.
    Committed {
        /// Id of the new certificate, now the device's only certificate.
        new_certificate_id: String,
    },
    /// The device reported an error; any new certificate is deleted.
    Failed {
        /// The device's error message.
        reason: String,
        /// The new certificate that was deleted, if one had been issued.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_certificate_id: Option<String>,
    },
    /// The deadline passed before a commit. A new certificate that was
    /// never made ACTIVE (so never sent) is deleted; one that may have been
    /// sent is kept beside the old one and support is told
    /// (`new_certificate_kept`): the device may already hold only its key.
    Expired {
        /// The new certificate, if one had been issued: deleted, or kept
        /// when `new_certificate_kept`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_certificate_id: Option<String>,
        /// The new certificate was left ACTIVE, attached, with its policies,
        /// because the device may have switched to it (its `crt_ack` may have
        /// been delivered without the commit landing). A later ack over it
        /// still commits. Absent (false) in rows written before it existed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        new_certificate_kept: bool,
    },
}

impl RotationState {
    /// The state's name as stored in the row (`REQUESTED`, `ISSUED`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Issuing { .. } => "ISSUING",
            Self::Issued { .. } => "ISSUED",
            Self::Committed { .. } => "COMMITTED",
            Self::Failed { .. } => "FAILED",
            Self::Expired { .. } => "EXPIRED",
        }
    }

    /// True while the rotation still accepts protocol events
    /// (REQUESTED, ISSUING, ISSUED). At most one open rotation per thing.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Self::Requested | Self::Issuing { .. } | Self::Issued { .. }
        )
    }

    /// True once the rotation has ended (COMMITTED, FAILED, EXPIRED).
    pub fn is_terminal(&self) -> bool {
        !self.is_open()
    }

    /// The new certificate recorded in this state, if any (for FAILED and
    /// EXPIRED: the one that was deleted).
    pub fn new_certificate_id(&self) -> Option<&str> {
        match self {
            Self::Requested | Self::Issuing { .. } => None,
            Self::Issued {
                new_certificate_id, ..
            }
            | Self::Committed { new_certificate_id } => Some(new_certificate_id),
            Self::Failed {
                new_certificate_id, ..
            }
            | Self::Expired {
                new_certificate_id, ..
            } => new_certificate_id.as_deref(),
        }
    }

    /// The CSR key fingerprint claimed or issued in this state, if any.
    pub fn csr_fingerprint(&self) -> Option<&str> {
        match self {
            Self::Issuing { csr_fingerprint }
            | Self::Issued {
                csr_fingerprint, ..
            } => Some(csr_fingerprint),
            _ => None,
        }
    }
}

impl fmt::Display for RotationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something that happened to a rotation. Time comes in the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A `csr_res` passed the CSR policy (the CSR Lambda checks it first).
    CsrReceived {
        /// `rotationId` from the payload; absent for devices on the original contract.
        rotation_id: Option<String>,
        /// Public-key fingerprint of the CSR.
        csr_fingerprint: String,
        /// When the message was handled (ms since the Unix epoch).
        now_ms: i64,
    },
    /// `CreateCertificateFromCsr` returned this certificate for the CSR with
    /// this fingerprint (the certificate exists, ACTIVE, attached to nothing).
    CertificateCreated {
        /// Id of the created certificate.
        certificate_id: String,
        /// Public-key fingerprint of the CSR it was created from.
        csr_fingerprint: String,
    },
    /// A `crt_ack` arrived.
    Ack {
        /// Id of the certificate the ack arrived on (the rule's `principal()`).
        principal: String,
        /// `rotationId` from the payload, if present.
        rotation_id: Option<String>,
        /// `certificateId` from the payload, if present.
        certificate_id: Option<String>,
        /// When the message was handled (ms since the Unix epoch).
        now_ms: i64,
    },
    /// A `crt_err` arrived.
    DeviceError {
        /// The device's error message.
        error: String,
        /// `rotationId` from the payload, if present.
        rotation_id: Option<String>,
        /// When the message was handled (ms since the Unix epoch).
        now_ms: i64,
    },
    /// A `csr_res` whose CSR the CSR Lambda refused (unreadable, a bad
    /// signature, a key or subject the CSR policy does not accept). While
    /// the rotation waits for a CSR, it fails at once: firmware that sends
    /// such a CSR will send it again, and the rotation would otherwise wait
    /// for its deadline before anyone hears.
    CsrRefused {
        /// Why, with what the CSR holds (key, subject) when readable.
        reason: String,
        /// `rotationId` from the payload, if present.
        rotation_id: Option<String>,
    },
    /// The scheduled sweeper looked at the rotation.
    Sweep {
        /// When the sweep ran (ms since the Unix epoch).
        now_ms: i64,
        /// Evidence that the device cannot hold the new certificate: the
        /// sweeper read it as not ACTIVE (the issuer activates it before any
        /// `crt` is published, so it was never sent). Only then may an
        /// ISSUED rotation's expiry delete it; by default (false) it is kept.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        new_certificate_unsent: bool,
    },
}

/// An effect the handler performs after its conditional write of
/// [`Transition::next`] succeeded, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Action {
    /// Call `CreateCertificateFromCsr` (set as active) with the CSR of the
    /// event, then feed [`Event::CertificateCreated`] back into [`step`].
    CreateCertificateFromCsr,
    /// Publish `crt` again with the certificate already issued (its PEM from
    /// `DescribeCertificate`); never create another.
    ResendCertificate {
        /// The certificate to send.
        certificate_id: String,
    },
    /// Attach every policy of the old certificate and the thing to the new
    /// certificate. Idempotent: also emitted when resuming.
    AttachOldPoliciesAndThing {
        /// The certificate to attach to.
        new_certificate_id: String,
    },
    /// Publish `crt` with the newly created certificate.
    PublishCrt {
        /// The certificate to send.
        certificate_id: String,
    },
    /// Detach the old certificate's policies and thing, deactivate it, delete it.
    RetireOldCertificate {
        /// The certificate to retire.
        old_certificate_id: String,
    },
    /// Detach policies and thing from this new certificate, deactivate it,
    /// delete it. A certificate already gone counts as done.
    DeleteNewCertificate {
        /// The certificate to delete.
        certificate_id: String,
    },
    /// Publish to the support topic.
    NotifySupport {
        /// One-line subject (SNS subject).
        subject: String,
        /// Body: thing, rotation id, what happened, what was cleaned up.
        message: String,
    },
}

/// The result of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The row to write, conditional on the row as it was read. Equal to the
    /// input when the event changes no state (a no-op or a cleanup only).
    pub next: Rotation,
    /// What to do after the write succeeded, in order.
    pub actions: Vec<Action>,
}

impl Transition {
    /// True when the row does not change (nothing to write).
    pub fn is_unchanged(&self, from: &Rotation) -> bool {
        &self.next == from
    }
}

/// Why an event was not accepted. A rejection changes nothing: no write, no
/// action; the handler logs [`Rejection::kind`] and the message and does not retry.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The event names another rotation than the thing's current one.
    #[error("message is for rotation {got}, but the rotation of thing {thing_name} is {expected}")]
    RotationIdMismatch {
        /// The thing.
        thing_name: String,
        /// The rotation id in the row.
        expected: String,
        /// The rotation id in the message.
        got: String,
    },
    /// The rotation has ended; nothing more happens to it.
    #[error("rotation {rotation_id} is {state}: {event} changes nothing")]
    RotationClosed {
        /// The rotation.
        rotation_id: String,
        /// Its terminal state name.
        state: &'static str,
        /// The event's name.
        event: &'static str,
    },
    /// A `csr_res` arrived after the rotation's deadline.
    #[error("csr for rotation {rotation_id} arrived at {now_ms}, after the deadline {deadline_ms}")]
    DeadlinePassed {
        /// The rotation.
        rotation_id: String,
        /// Its deadline (ms).
        deadline_ms: i64,
        /// When the csr arrived (ms).
        now_ms: i64,
    },
    /// A duplicate `csr_res` while the certificate is being created.
    #[error("a certificate for rotation {rotation_id} is already being created from this key")]
    IssueInProgress {
        /// The rotation.
        rotation_id: String,
    },
    /// A `csr_res` with another key than the one already claimed or issued.
    #[error(
        "csr key {got} differs from key {expected} already used for rotation {rotation_id}: the device must use the certificate issued for the first key"
    )]
    DifferentKey {
        /// The rotation.
        rotation_id: String,
        /// Fingerprint already claimed or issued.
        expected: String,
        /// Fingerprint in the new CSR.
        got: String,
    },
    /// A `crt_ack` before a certificate was issued.
    #[error(
        "ack for rotation {rotation_id} arrived in state {state}, before a certificate was issued"
    )]
    AckBeforeIssued {
        /// The rotation.
        rotation_id: String,
        /// The state name.
        state: &'static str,
    },
    /// A `crt_ack` sent over the old certificate.
    #[error(
        "ack for rotation {rotation_id} arrived on the old certificate {principal}: only an ack over the new certificate commits"
    )]
    AckOnOldPrincipal {
        /// The rotation.
        rotation_id: String,
        /// The certificate the ack arrived on.
        principal: String,
    },
    /// A `crt_ack` sent over a certificate that is neither old nor new.
    #[error(
        "ack for rotation {rotation_id} arrived on certificate {principal}, not on the new certificate {expected}"
    )]
    AckOnUnknownPrincipal {
        /// The rotation.
        rotation_id: String,
        /// The certificate the ack arrived on.
        principal: String,
        /// The new certificate.
        expected: String,
    },
    /// A `crt_ack` whose `certificateId` is not the new certificate.
    #[error(
        "ack for rotation {rotation_id} names certificate {got}, but the new certificate is {expected}"
    )]
    AckCertificateMismatch {
        /// The rotation.
        rotation_id: String,
        /// The `certificateId` in the ack.
        got: String,
        /// The new certificate.
        expected: String,
    },
    /// `CreateCertificateFromCsr` reported the old certificate's id.
    #[error(
        "certificate {certificate_id} reported as created for rotation {rotation_id} is its old certificate"
    )]
    NotANewCertificate {
        /// The rotation.
        rotation_id: String,
        /// The certificate id reported.
        certificate_id: String,
    },
    /// A sweep before the deadline.
    #[error("rotation {rotation_id} is not past its deadline {deadline_ms} at {now_ms}")]
    NotDue {
        /// The rotation.
        rotation_id: String,
        /// Its deadline (ms).
        deadline_ms: i64,
        /// When the sweep ran (ms).
        now_ms: i64,
    },
    /// A refused CSR for a rotation whose certificate is issued or being
    /// issued from an accepted one: left alone.
    #[error(
        "rotation {rotation_id} already issues from an accepted csr; this one was refused: {reason}"
    )]
    CsrRefused {
        /// The rotation.
        rotation_id: String,
        /// Why the CSR was refused.
        reason: String,
    },
}

impl Rejection {
    /// A stable snake_case code for log lines and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RotationIdMismatch { .. } => "rotation_id_mismatch",
            Self::RotationClosed { .. } => "rotation_closed",
            Self::DeadlinePassed { .. } => "deadline_passed",
            Self::IssueInProgress { .. } => "issue_in_progress",
            Self::DifferentKey { .. } => "different_key",
            Self::AckBeforeIssued { .. } => "ack_before_issued",
            Self::AckOnOldPrincipal { .. } => "ack_on_old_principal",
            Self::AckOnUnknownPrincipal { .. } => "ack_on_unknown_principal",
            Self::AckCertificateMismatch { .. } => "ack_certificate_mismatch",
            Self::NotANewCertificate { .. } => "not_a_new_certificate",
            Self::NotDue { .. } => "not_due",
            Self::CsrRefused { .. } => "csr_refused",
        }
    }
}

impl Event {
    /// The event's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CsrReceived { .. } => "csr_res",
            Self::CertificateCreated { .. } => "certificate_created",
            Self::Ack { .. } => "crt_ack",
            Self::DeviceError { .. } => "crt_err",
            Self::CsrRefused { .. } => "csr_res_refused",
            Self::Sweep { .. } => "sweep",
        }
    }

    fn rotation_id(&self) -> Option<&str> {
        match self {
            Self::CsrReceived { rotation_id, .. }
            | Self::Ack { rotation_id, .. }
            | Self::DeviceError { rotation_id, .. }
            | Self::CsrRefused { rotation_id, .. } => rotation_id.as_deref(),
            Self::CertificateCreated { .. } | Self::Sweep { .. } => None,
        }
    }
}

/// The thing a rotation of a certificate attached to `things` talks to
/// (its `csr_req`, `crt` and the device's answers use this thing's
/// management topics, and the device connects with it as client id): the
/// thing named like the certificate's subject CN when there is one, else
/// the first name in byte order. AWS lets a certificate be attached to
/// several things (non-exclusively); the rotation is then per certificate
/// and the new certificate is attached to every thing the old one was.
/// `None` when `things` is empty.
pub fn primary_thing<'a>(things: &'a [String], certificate_cn: Option<&str>) -> Option<&'a str> {
    things
        .iter()
        .find(|t| Some(t.as_str()) == certificate_cn)
        .or_else(|| things.iter().min())
        .map(String::as_str)
}

impl Rotation {
    /// A new rotation in REQUESTED, with no attempts yet.
    pub fn requested(
        rotation_id: impl Into<String>,
        thing_name: impl Into<String>,
        old_certificate_id: impl Into<String>,
        created_at_ms: i64,
        deadline_ms: i64,
    ) -> Self {
        Self {
            rotation_id: rotation_id.into(),
            thing_name: thing_name.into(),
            old_certificate_id: old_certificate_id.into(),
            state: RotationState::Requested,
            created_at_ms,
            deadline_ms,
            attempts: 0,
            cleanup_pending: false,
            resent_at_ms: None,
        }
    }

    /// Whether writing `next` over `self` (as read) closes an open
    /// rotation: the store then also closes the thing's pointer.
    pub fn closes_into(&self, next: &Rotation) -> bool {
        self.state.is_open() && next.state.is_terminal()
    }

    /// Whether the sweeper may still have to act on this row: open, or
    /// closed with its cleanup pending. Such rows are the ones the stores
    /// return from `open_due` (the DynamoDB due index holds only them);
    /// the others are finished.
    pub fn is_unsettled(&self) -> bool {
        self.state.is_open() || self.cleanup_pending
    }

    /// The [`RESEND_MARKS`] instant at which this open rotation's pending
    /// message is due to be sent again, if it is due at `now_ms`: the latest
    /// mark passed, when the message was not already sent again at or after
    /// it in this state. `None` for a closed rotation, before half its time,
    /// and from its deadline on (the sweeper expires it then). So a stalled
    /// rotation costs at most two extra messages per state, however often
    /// the sweeper runs.
    pub fn resend_mark(&self, now_ms: i64) -> Option<i64> {
        if !self.state.is_open() || now_ms >= self.deadline_ms {
            return None;
        }
        let window = self.deadline_ms.saturating_sub(self.created_at_ms);
        let mark = RESEND_MARKS
            .iter()
            .map(|(num, den)| self.created_at_ms.saturating_add(window / den * num))
            .filter(|mark| *mark <= now_ms)
            .max()?;
        match self.resent_at_ms {
            Some(at) if at >= mark => None,
            _ => Some(mark),
        }
    }

    /// The certificates the device may be relying on in this state: each must
    /// be ACTIVE and attached to the thing with its policies ("never brick").
    ///
    /// REQUESTED/ISSUING: the old one. ISSUED: both (the device may already
    /// have switched). COMMITTED: the new one. FAILED/EXPIRED: the old one;
    /// EXPIRED with the new certificate kept: both.
    pub fn certificates_the_device_may_hold(&self) -> Vec<&str> {
        match &self.state {
            RotationState::Issued {
                new_certificate_id, ..
            }
            | RotationState::Expired {
                new_certificate_id: Some(new_certificate_id),
                new_certificate_kept: true,
            } => vec![self.old_certificate_id.as_str(), new_certificate_id],
            RotationState::Committed { new_certificate_id } => vec![new_certificate_id],
            RotationState::Requested
            | RotationState::Issuing { .. }
            | RotationState::Failed { .. }
            | RotationState::Expired { .. } => vec![self.old_certificate_id.as_str()],
        }
    }

    /// The certificates this rotation has ordered removed (detached,
    /// deactivated, deleted) in reaching its state ("nothing orphaned").
    ///
    /// COMMITTED: the old one. FAILED/EXPIRED: the new one, if one was
    /// issued (none when EXPIRED kept it).
    pub fn certificates_to_remove(&self) -> Vec<&str> {
        match &self.state {
            RotationState::Committed { .. } => vec![self.old_certificate_id.as_str()],
            RotationState::Expired {
                new_certificate_kept: true,
                ..
            } => Vec::new(),
            RotationState::Failed {
                new_certificate_id, ..
            }
            | RotationState::Expired {
                new_certificate_id, ..
            } => new_certificate_id.as_deref().into_iter().collect(),
            RotationState::Requested
            | RotationState::Issuing { .. }
            | RotationState::Issued { .. } => Vec::new(),
        }
    }
}

impl Rotation {
    /// The idempotent removals this row's state implies (COMMITTED: retire the
    /// old certificate; FAILED/EXPIRED: delete the new one, if issued).
    ///
    /// [`step`] emits these once, on the transition into the state; a
    /// duplicate event afterwards is a no-op or a rejection. A handler whose
    /// earlier invocation wrote the row and then failed before finishing its
    /// actions runs these on its retry (a certificate already gone counts as
    /// done), so nothing is left orphaned.
    pub fn cleanup_actions(&self) -> Vec<Action> {
        match &self.state {
            RotationState::Committed { .. } => vec![Action::RetireOldCertificate {
                old_certificate_id: self.old_certificate_id.clone(),
            }],
            _ => self
                .certificates_to_remove()
                .into_iter()
                .map(|id| Action::DeleteNewCertificate {
                    certificate_id: id.to_owned(),
                })
                .collect(),
        }
    }
}

/// What the registry says about one certificate of the rotation's thing,
/// for [`check_invariants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateFacts<'a> {
    /// The certificate.
    pub certificate_id: &'a str,
    /// Its status is ACTIVE.
    pub active: bool,
    /// It is attached to the rotation's thing.
    pub attached_to_thing: bool,
    /// It has at least one policy attached.
    pub has_policy: bool,
}

impl CertificateFacts<'_> {
    fn usable(&self) -> bool {
        self.active && self.attached_to_thing && self.has_policy
    }

    fn lingering(&self) -> bool {
        self.active || self.attached_to_thing || self.has_policy
    }
}

/// A broken invariant, found by [`check_invariants`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    /// A certificate the device may rely on cannot be used to connect.
    #[error(
        "thing {thing_name} may be bricked: certificate {certificate_id} is not active, attached and with a policy in state {state}"
    )]
    MayBrick {
        /// The thing.
        thing_name: String,
        /// The certificate the device may hold.
        certificate_id: String,
        /// The rotation's state name.
        state: &'static str,
    },
    /// A certificate no device holds is still active or attached.
    #[error(
        "certificate {certificate_id} of thing {thing_name} is orphaned: still active or attached in state {state}"
    )]
    Orphaned {
        /// The thing.
        thing_name: String,
        /// The orphaned certificate.
        certificate_id: String,
        /// The rotation's state name.
        state: &'static str,
    },
}

/// Checks DESIGN.md's "never brick" and "nothing orphaned" invariants for a
/// rotation against the registry, after a handler has finished its actions.
///
/// `registry` lists the certificates the registry still holds that belong to
/// the rotation's thing (attached to it, or named by the rotation). Every
/// certificate in [`Rotation::certificates_the_device_may_hold`] must be
/// usable (ACTIVE, attached to the thing, with a policy); every other one must
/// be neither ACTIVE nor attached to anything.
pub fn check_invariants(
    rotation: &Rotation,
    registry: &[CertificateFacts<'_>],
) -> Result<(), InvariantViolation> {
    let held = rotation.certificates_the_device_may_hold();
    let state = rotation.state.name();
    for id in &held {
        let usable = registry
            .iter()
            .any(|c| c.certificate_id == *id && c.usable());
        if !usable {
            return Err(InvariantViolation::MayBrick {
                thing_name: rotation.thing_name.clone(),
                certificate_id: (*id).to_owned(),
                state,
            });
        }
    }
    if let Some(orphan) = registry
        .iter()
        .find(|c| c.lingering() && !held.contains(&c.certificate_id))
    {
        return Err(InvariantViolation::Orphaned {
            thing_name: rotation.thing_name.clone(),
            certificate_id: orphan.certificate_id.to_owned(),
            state,
        });
    }
    Ok(())
}

/// Applies one event to a rotation. Pure: the caller writes
/// [`Transition::next`] conditionally on `rotation` (as read) and then runs
/// the actions. See the module documentation for every outcome.
pub fn step(rotation: &Rotation, event: &Event) -> Result<Transition, Rejection> {
    if let Some(got) = event.rotation_id()
        && got != rotation.rotation_id
    {
        return Err(Rejection::RotationIdMismatch {
            thing_name: rotation.thing_name.clone(),
            expected: rotation.rotation_id.clone(),
            got: got.to_owned(),
        });
    }
    match event {
        Event::CsrReceived {
            csr_fingerprint,
            now_ms,
            ..
        } => on_csr(rotation, csr_fingerprint, *now_ms),
        Event::CertificateCreated {
            certificate_id,
            csr_fingerprint,
        } => on_created(rotation, certificate_id, csr_fingerprint),
        Event::Ack {
            principal,
            certificate_id,
            ..
        } => on_ack(rotation, principal, certificate_id.as_deref()),
        Event::DeviceError { error, .. } => on_error(rotation, error),
        Event::CsrRefused { reason, .. } => on_csr_refused(rotation, reason),
        Event::Sweep {
            now_ms,
            new_certificate_unsent,
        } => on_sweep(rotation, *now_ms, *new_certificate_unsent),
    }
}

fn closed(rotation: &Rotation, event: &'static str) -> Rejection {
    Rejection::RotationClosed {
        rotation_id: rotation.rotation_id.clone(),
        state: rotation.state.name(),
        event,
    }
}

fn with_state(rotation: &Rotation, state: RotationState) -> Rotation {
    Rotation {
        state,
        resent_at_ms: None,
        ..rotation.clone()
    }
}

fn unchanged(rotation: &Rotation, actions: Vec<Action>) -> Transition {
    Transition {
        next: rotation.clone(),
        actions,
    }
}

fn on_csr(rotation: &Rotation, fingerprint: &str, now_ms: i64) -> Result<Transition, Rejection> {
    if rotation.state.is_terminal() {
        return Err(closed(rotation, "csr_res"));
    }
    if now_ms > rotation.deadline_ms {
        return Err(Rejection::DeadlinePassed {
            rotation_id: rotation.rotation_id.clone(),
            deadline_ms: rotation.deadline_ms,
            now_ms,
        });
    }
    let different_key = |expected: &str| Rejection::DifferentKey {
        rotation_id: rotation.rotation_id.clone(),
        expected: expected.to_owned(),
        got: fingerprint.to_owned(),
    };
    match &rotation.state {
        RotationState::Requested => {
            let mut next = with_state(
                rotation,
                RotationState::Issuing {
                    csr_fingerprint: fingerprint.to_owned(),
                },
            );
            next.attempts = next.attempts.saturating_add(1);
            Ok(Transition {
                next,
                actions: vec![Action::CreateCertificateFromCsr],
            })
        }
        RotationState::Issuing { csr_fingerprint } if csr_fingerprint == fingerprint => {
            Err(Rejection::IssueInProgress {
                rotation_id: rotation.rotation_id.clone(),
            })
        }
        RotationState::Issuing { csr_fingerprint } => Err(different_key(csr_fingerprint)),
        RotationState::Issued {
            new_certificate_id,
            csr_fingerprint,
        } if csr_fingerprint == fingerprint => {
            let mut next = rotation.clone();
            next.attempts = next.attempts.saturating_add(1);
            Ok(Transition {
                next,
                actions: vec![
                    Action::AttachOldPoliciesAndThing {
                        new_certificate_id: new_certificate_id.clone(),
                    },
                    Action::ResendCertificate {
                        certificate_id: new_certificate_id.clone(),
                    },
                ],
            })
        }
        RotationState::Issued {
            csr_fingerprint, ..
        } => Err(different_key(csr_fingerprint)),
        RotationState::Committed { .. }
        | RotationState::Failed { .. }
        | RotationState::Expired { .. } => Err(closed(rotation, "csr_res")),
    }
}

fn on_created(
    rotation: &Rotation,
    certificate_id: &str,
    fingerprint: &str,
) -> Result<Transition, Rejection> {
    // The API never returns an existing certificate; never delete the old one.
    if certificate_id == rotation.old_certificate_id {
        return Err(Rejection::NotANewCertificate {
            rotation_id: rotation.rotation_id.clone(),
            certificate_id: certificate_id.to_owned(),
        });
    }
    let attach_and_publish = || {
        vec![
            Action::AttachOldPoliciesAndThing {
                new_certificate_id: certificate_id.to_owned(),
            },
            Action::PublishCrt {
                certificate_id: certificate_id.to_owned(),
            },
        ]
    };
    if rotation.state.new_certificate_id() == Some(certificate_id) {
        return Ok(match rotation.state {
            // A retry after a partial failure: resume (attach is idempotent).
            RotationState::Issued { .. } => unchanged(rotation, attach_and_publish()),
            // COMMITTED: the device's only certificate, never delete it.
            // FAILED/EXPIRED: already deleted by the transition into that
            // state, or kept on purpose (EXPIRED with the new one kept).
            _ => unchanged(rotation, Vec::new()),
        });
    }
    Ok(match &rotation.state {
        RotationState::Issuing { csr_fingerprint } if csr_fingerprint == fingerprint => {
            Transition {
                next: with_state(
                    rotation,
                    RotationState::Issued {
                        new_certificate_id: certificate_id.to_owned(),
                        csr_fingerprint: csr_fingerprint.clone(),
                    },
                ),
                actions: attach_and_publish(),
            }
        }
        // Unclaimed, for another key, a lost race, or late after the end:
        // no device will ever hold it.
        _ => unchanged(
            rotation,
            vec![Action::DeleteNewCertificate {
                certificate_id: certificate_id.to_owned(),
            }],
        ),
    })
}

fn on_ack(
    rotation: &Rotation,
    principal: &str,
    certificate_id: Option<&str>,
) -> Result<Transition, Rejection> {
    let (new_certificate_id, committed) = match &rotation.state {
        RotationState::Requested | RotationState::Issuing { .. } => {
            return Err(Rejection::AckBeforeIssued {
                rotation_id: rotation.rotation_id.clone(),
                state: rotation.state.name(),
            });
        }
        RotationState::Issued {
            new_certificate_id, ..
        } => (new_certificate_id, false),
        RotationState::Committed { new_certificate_id } => (new_certificate_id, true),
        // Expired with the new certificate kept: an ack over it is the
        // evidence the sweeper lacked, so it still commits.
        RotationState::Expired {
            new_certificate_id: Some(new_certificate_id),
            new_certificate_kept: true,
        } if principal != rotation.old_certificate_id => (new_certificate_id, false),
        RotationState::Failed { .. } | RotationState::Expired { .. } => {
            return Err(closed(rotation, "crt_ack"));
        }
    };
    if principal == rotation.old_certificate_id {
        return Err(Rejection::AckOnOldPrincipal {
            rotation_id: rotation.rotation_id.clone(),
            principal: principal.to_owned(),
        });
    }
    if principal != new_certificate_id {
        return Err(Rejection::AckOnUnknownPrincipal {
            rotation_id: rotation.rotation_id.clone(),
            principal: principal.to_owned(),
            expected: new_certificate_id.clone(),
        });
    }
    if let Some(got) = certificate_id
        && got != new_certificate_id
    {
        return Err(Rejection::AckCertificateMismatch {
            rotation_id: rotation.rotation_id.clone(),
            got: got.to_owned(),
            expected: new_certificate_id.clone(),
        });
    }
    if committed {
        return Ok(unchanged(rotation, Vec::new()));
    }
    Ok(Transition {
        next: with_state(
            rotation,
            RotationState::Committed {
                new_certificate_id: new_certificate_id.clone(),
            },
        ),
        actions: vec![Action::RetireOldCertificate {
            old_certificate_id: rotation.old_certificate_id.clone(),
        }],
    })
}

fn cleanup_actions(new_certificate_id: Option<&str>) -> Vec<Action> {
    new_certificate_id
        .map(|id| Action::DeleteNewCertificate {
            certificate_id: id.to_owned(),
        })
        .into_iter()
        .collect()
}

fn support_message(rotation: &Rotation, what: &str, new_certificate_id: Option<&str>) -> String {
    let cleaned = match new_certificate_id {
        Some(id) => format!("new certificate {id} deleted"),
        None => "no new certificate had been issued".to_owned(),
    };
    format!(
        "thing: {}\nrotation: {}\nold certificate: {} (still active)\n{what}\ncleanup: {cleaned}",
        rotation.thing_name, rotation.rotation_id, rotation.old_certificate_id
    )
}

fn on_error(rotation: &Rotation, error: &str) -> Result<Transition, Rejection> {
    if rotation.state.is_terminal() {
        return Err(closed(rotation, "crt_err"));
    }
    let new_certificate_id = rotation.state.new_certificate_id().map(str::to_owned);
    let mut actions = cleanup_actions(new_certificate_id.as_deref());
    actions.push(Action::NotifySupport {
        subject: format!("fleetcert: rotation failed for {}", rotation.thing_name),
        message: support_message(
            rotation,
            &format!("device error: {error}"),
            new_certificate_id.as_deref(),
        ),
    });
    Ok(Transition {
        next: with_state(
            rotation,
            RotationState::Failed {
                reason: error.to_owned(),
                new_certificate_id,
            },
        ),
        actions,
    })
}

fn on_csr_refused(rotation: &Rotation, reason: &str) -> Result<Transition, Rejection> {
    match &rotation.state {
        RotationState::Requested => Ok(Transition {
            next: with_state(
                rotation,
                RotationState::Failed {
                    reason: format!("csr refused: {reason}"),
                    new_certificate_id: None,
                },
            ),
            actions: vec![Action::NotifySupport {
                subject: format!("fleetcert: csr refused for {}", rotation.thing_name),
                message: support_message(
                    rotation,
                    &format!(
                        "the device's csr was refused ({reason}); the rotation failed at once and the device keeps its current certificate"
                    ),
                    None,
                ),
            }],
        }),
        // A certificate is being or was issued for an accepted CSR: a
        // refused one now is a stray duplicate, not the device's answer.
        RotationState::Issuing { .. } | RotationState::Issued { .. } => {
            Err(Rejection::CsrRefused {
                rotation_id: rotation.rotation_id.clone(),
                reason: reason.to_owned(),
            })
        }
        RotationState::Committed { .. }
        | RotationState::Failed { .. }
        | RotationState::Expired { .. } => Err(closed(rotation, "csr_res")),
    }
}

fn on_sweep(rotation: &Rotation, now_ms: i64, unsent: bool) -> Result<Transition, Rejection> {
    if rotation.state.is_terminal() {
        return Err(closed(rotation, "sweep"));
    }
    if now_ms <= rotation.deadline_ms {
        return Err(Rejection::NotDue {
            rotation_id: rotation.rotation_id.clone(),
            deadline_ms: rotation.deadline_ms,
            now_ms,
        });
    }
    let new_certificate_id = rotation.state.new_certificate_id().map(str::to_owned);
    // ISSUED: `crt` may have reached the device, which may have connected
    // with the new certificate, acked (the PUBACK is all it gets) and
    // dropped its old key while the commit never landed. Deleting the new
    // certificate then bricks it; without evidence that it was never sent,
    // keep both and tell support.
    let keep = new_certificate_id.is_some() && !unsent;
    if keep {
        let new_id = new_certificate_id.as_deref().unwrap_or_default();
        return Ok(Transition {
            next: with_state(
                rotation,
                RotationState::Expired {
                    new_certificate_id: new_certificate_id.clone(),
                    new_certificate_kept: true,
                },
            ),
            actions: vec![Action::NotifySupport {
                subject: format!(
                    "fleetcert: rotation expired for {}, both certificates kept",
                    rotation.thing_name
                ),
                message: format!(
                    "thing: {}\nrotation: {}\nold certificate: {} (still active)\nnew certificate: {new_id} (still active: it was sent, the device may hold only its key)\nexpired in state ISSUED at {now_ms}, deadline {}, without a commit\ncleanup: none; a crt_ack over the new certificate still commits, otherwise decide which certificate the device holds before revoking the other",
                    rotation.thing_name,
                    rotation.rotation_id,
                    rotation.old_certificate_id,
                    rotation.deadline_ms
                ),
            }],
        });
    }
    let mut actions = cleanup_actions(new_certificate_id.as_deref());
    actions.push(Action::NotifySupport {
        subject: format!("fleetcert: rotation expired for {}", rotation.thing_name),
        message: support_message(
            rotation,
            &format!(
                "expired in state {} at {now_ms}, deadline {}",
                rotation.state.name(),
                rotation.deadline_ms
            ),
            new_certificate_id.as_deref(),
        ),
    });
    Ok(Transition {
        next: with_state(
            rotation,
            RotationState::Expired {
                new_certificate_id,
                new_certificate_kept: false,
            },
        ),
        actions,
    })
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
