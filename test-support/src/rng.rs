//! A seeded RNG for throw-away RSA test keys, and the keys.

use std::sync::OnceLock;

use rcgen::{KeyPair, SignatureAlgorithm};
use rsa::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};

/// Deterministic SHA-256 counter-mode bytes: good enough to generate
/// throw-away RSA test keys without an OS RNG. Never for real keys.
#[derive(Debug, Clone)]
pub struct TestRng {
    seed: u64,
    counter: u64,
    buf: Vec<u8>,
}

impl TestRng {
    /// The stream of `seed`: the same seed, the same bytes.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: 0,
            buf: Vec::new(),
        }
    }
}

impl rsa::rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst {
            if self.buf.is_empty() {
                let mut h = Sha256::new();
                h.update(self.seed.to_le_bytes());
                h.update(self.counter.to_le_bytes());
                self.counter += 1;
                self.buf = h.finalize().to_vec();
            }
            *byte = self.buf.pop().expect("refilled above");
        }
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for TestRng {}

/// The RSA test key of `bits` (1024 or 2048), generated once per process
/// from [`TestRng`] seeded with `bits`.
///
/// # Panics
/// For other sizes.
pub fn rsa_key(bits: usize) -> &'static rsa::PrivateKey {
    static K1024: OnceLock<rsa::PrivateKey> = OnceLock::new();
    static K2048: OnceLock<rsa::PrivateKey> = OnceLock::new();
    let cell = match bits {
        1024 => &K1024,
        2048 => &K2048,
        _ => panic!("only 1024 and 2048 bit test keys"),
    };
    cell.get_or_init(|| {
        rsa::PrivateKey::new(&mut TestRng::new(bits as u64), bits).expect("rsa key generation")
    })
}

/// [`rsa_key`] as an rcgen key pair signing with `alg` (rcgen's ring
/// backend cannot generate RSA keys).
///
/// # Panics
/// When `alg` is not an RSA algorithm, or for sizes [`rsa_key`] refuses.
pub fn rsa_keypair(bits: usize, alg: &'static SignatureAlgorithm) -> KeyPair {
    let pkcs8 = rsa_key(bits).to_pkcs8_der().expect("pkcs8");
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_bytes().into(), alg).expect("rcgen rsa key")
}
