//! The devices, as state machines rather than TLS agents: when each is
//! online, how it answers `csr_req` and `crt`, the certificate it connects
//! with, and the keys it makes CSRs with (a small pool of real P-256 keys:
//! every CSR is real and signed, as the CSR issuer verifies it).

use rcgen::{CertificateParams, DnType, KeyPair};

use crate::options::PlanOptions;
use crate::rng::Rng;

const DAY_NS: u64 = 86_400_000_000_000;
/// Keys in the pool; a device's next key is the pool's next one.
const KEY_POOL: usize = 8;

/// How a device behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Always online, answers.
    Online,
    /// Online once a day from `offset_ns` into the day, for the mix's window.
    Daily {
        /// Start of its window in the day.
        offset_ns: u64,
    },
    /// Offline until `until_ns`, then online.
    Away {
        /// When it comes back.
        until_ns: u64,
    },
    /// Online, never answers a `csr_req`.
    Silent,
    /// Answers, then refuses the new certificate with `crt_err`.
    CrtErr,
}

impl Behaviour {
    /// The class name in reports.
    pub fn class(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Daily { .. } => "online daily",
            Self::Away { .. } => "offline for days",
            Self::Silent => "never answers",
            Self::CrtErr => "sends crt_err",
        }
    }
}

/// One device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its behaviour.
    pub behaviour: Behaviour,
    /// The certificate it connects with.
    pub certificate_id: String,
    /// When its first certificate expires, ms since the Unix epoch.
    pub expires_ms: i64,
    /// Its current key (pool index).
    pub key: u8,
    /// The rotation it answered and the key of that CSR.
    pub answered: Option<(String, u8)>,
    /// When it switched to a new certificate (ns of virtual time).
    pub rotated_ns: Option<u64>,
}

/// The fleet.
#[derive(Debug)]
pub struct Fleet {
    /// The devices, by index (thing `thing-<index>`).
    pub devices: Vec<Device>,
    keys: Vec<KeyPair>,
    window_ns: u64,
}

/// A P-256 key made from the seed.
fn seeded_key(seed: u64, purpose: u64) -> Result<KeyPair, rcgen::Error> {
    use p256::pkcs8::EncodePrivateKey;
    let mut attempt = 0u64;
    loop {
        let bytes =
            crate::cloud::seed_bytes(seed, purpose.wrapping_mul(1_000).wrapping_add(attempt));
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            let der = secret
                .to_pkcs8_der()
                .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
            return KeyPair::from_pkcs8_der_and_sign_algo(
                &der.as_bytes().into(),
                &rcgen::PKCS_ECDSA_P256_SHA256,
            );
        }
        attempt += 1;
    }
}

/// The thing name of device `i`.
pub fn thing_name(i: usize) -> String {
    format!("thing-{i:07}")
}

/// The device index of a thing name.
pub fn device_index(thing: &str) -> Option<usize> {
    thing.strip_prefix("thing-")?.parse().ok()
}

impl Fleet {
    /// The devices of `options`, their behaviour and expiry drawn from `rng`
    /// (certificates are issued by the caller: [`Fleet::csr`]).
    ///
    /// # Errors
    /// When a key cannot be generated.
    pub fn new(options: &PlanOptions, rng: &mut Rng) -> Result<Fleet, rcgen::Error> {
        // keys from the seed: the same seed gives the same certificates
        let keys = (0..KEY_POOL as u64)
            .map(|k| seeded_key(options.seed, k + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let m = &options.mix;
        let (lo, hi) = options.expiry_days;
        let devices = (0..options.devices)
            .map(|i| {
                let pick = rng.unit();
                let behaviour = if pick < m.daily_share {
                    Behaviour::Daily {
                        offset_ns: rng.below(DAY_NS),
                    }
                } else if pick < m.daily_share + m.away_share {
                    Behaviour::Away {
                        until_ns: u64::from(m.away_days) * DAY_NS,
                    }
                } else if pick < m.daily_share + m.away_share + m.silent_share {
                    Behaviour::Silent
                } else if pick < m.daily_share + m.away_share + m.silent_share + m.crt_err_share {
                    Behaviour::CrtErr
                } else {
                    Behaviour::Online
                };
                let days = lo + (hi - lo) * rng.unit();
                Device {
                    behaviour,
                    certificate_id: String::new(),
                    expires_ms: crate::cloud::START_MS + (days * 86_400_000.0) as i64,
                    key: u8::try_from(i % KEY_POOL as u64).unwrap_or(0),
                    answered: None,
                    rotated_ns: None,
                }
            })
            .collect();
        Ok(Fleet {
            devices,
            keys,
            window_ns: u64::from(m.daily_window_minutes) * 60_000_000_000,
        })
    }

    /// The next key after `key`.
    pub fn next_key(key: u8) -> u8 {
        u8::try_from((usize::from(key) + 1) % KEY_POOL).unwrap_or(0)
    }

    /// A CSR of device `i` for key `key` (subject CN = its thing name).
    ///
    /// # Errors
    /// When rcgen cannot sign.
    pub fn csr(&self, i: usize, key: u8) -> Result<String, rcgen::Error> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, thing_name(i));
        params
            .serialize_request(&self.keys[usize::from(key)])?
            .pem()
    }

    /// The earliest instant from `t_ns` on at which device `i` is online
    /// (`None`: never again).
    pub fn next_online(&self, i: usize, t_ns: u64) -> Option<u64> {
        match self.devices[i].behaviour {
            Behaviour::Online | Behaviour::Silent | Behaviour::CrtErr => Some(t_ns),
            Behaviour::Away { until_ns } => Some(t_ns.max(until_ns)),
            Behaviour::Daily { offset_ns } => {
                let day = t_ns / DAY_NS;
                let start = day * DAY_NS + offset_ns;
                // yesterday's window may run past midnight
                let spill = (day * DAY_NS + offset_ns + self.window_ns).checked_sub(DAY_NS);
                if spill.is_some_and(|end| t_ns < end)
                    || (t_ns >= start && t_ns < start + self.window_ns)
                {
                    Some(t_ns)
                } else if t_ns < start {
                    Some(start)
                } else {
                    Some(start + DAY_NS)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(offset_ns: u64, window_minutes: u32) -> Fleet {
        let mut options = PlanOptions::new(1);
        options.mix.daily_share = 1.0;
        options.mix.daily_window_minutes = window_minutes;
        let mut fleet = Fleet::new(&options, &mut Rng::new(1)).unwrap_or_else(|e| panic!("{e}"));
        fleet.devices[0].behaviour = Behaviour::Daily { offset_ns };
        fleet
    }

    #[test]
    fn a_daily_device_is_online_in_its_window_only() {
        let hour = DAY_NS / 24;
        let f = daily(10 * hour, 60);
        assert_eq!(f.next_online(0, 10 * hour + 1), Some(10 * hour + 1));
        assert_eq!(f.next_online(0, 9 * hour), Some(10 * hour));
        assert_eq!(f.next_online(0, 12 * hour), Some(DAY_NS + 10 * hour));
        // a window from 23:30 to 00:30 covers 00:10 of the next day
        let f = daily(23 * hour + hour / 2, 60);
        assert_eq!(f.next_online(0, DAY_NS + hour / 6), Some(DAY_NS + hour / 6));
    }
}
