//! Topic names of the rotation protocol and MQTT topic-filter matching.

/// The management topics of the rotation protocol live under
/// `management/topic/{clientId}/`; the client id is the thing name.
pub const MANAGEMENT_PREFIX: &str = "management/topic/";

/// The five messages of the rotation protocol, named by their topic suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// cloud → device: send a CSR.
    CsrReq,
    /// device → cloud: here is the CSR.
    CsrRes,
    /// cloud → device: here is the new certificate.
    Crt,
    /// device → cloud, on the new certificate: it works.
    CrtAck,
    /// device → cloud, on the old certificate: it does not.
    CrtErr,
}

impl MessageKind {
    /// Every kind, in protocol order.
    pub const ALL: [MessageKind; 5] = [
        MessageKind::CsrReq,
        MessageKind::CsrRes,
        MessageKind::Crt,
        MessageKind::CrtAck,
        MessageKind::CrtErr,
    ];

    /// The topic suffix, which is also the contract's name.
    pub const fn suffix(self) -> &'static str {
        match self {
            MessageKind::CsrReq => "csr_req",
            MessageKind::CsrRes => "csr_res",
            MessageKind::Crt => "crt",
            MessageKind::CrtAck => "crt_ack",
            MessageKind::CrtErr => "crt_err",
        }
    }

    /// The kind named by a topic suffix.
    pub fn from_suffix(suffix: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.suffix() == suffix)
    }
}
