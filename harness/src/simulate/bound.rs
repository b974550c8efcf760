//! The machine's crypto bound: the rotations per second its cryptography allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rcgen::{CertificateParams, DnType, KeyPair};

use super::TestCa;

/// The machine's bound: rotations per second if every core did nothing but
/// one rotation's cryptography — P-256 key generation, CSR signing, CSR
/// verification (as the CSR issuer checks it), certificate signing, and one
/// mutual-TLS handshake (both sides, in memory). Runs those operations in
/// a loop on one thread for `budget` and scales by the available cores.
///
/// # Errors
/// When a key, certificate or TLS configuration cannot be made.
pub fn crypto_bound(budget: Duration) -> anyhow::Result<f64> {
    use rcgen::CertificateSigningRequestParams;
    let server = emulator::tls::ServerIdentity::generate()?;
    let server_config = server.server_config()?;
    let roots = device::keys::root_store(server.root_ca_pem())?;
    let ca = TestCa::new("bound CA")?;
    let started = Instant::now();
    let mut n = 0u64;
    while n == 0 || started.elapsed() < budget {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("bound-{n}"));
        let csr = params.serialize_request(&key)?.pem()?;
        rules::csr::inspect_csr(&csr)?;
        let cert = CertificateSigningRequestParams::from_pem(&csr)?.signed_by(ca.issuer())?;
        let client = device::keys::client_config(roots.clone(), &cert.pem(), &key.serialize_pem())?;
        handshake(client, server_config.clone())?;
        n += 1;
    }
    let per_rotation = started.elapsed().as_secs_f64() / n as f64;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    Ok(cores / per_rotation)
}

/// A full TLS handshake between a client and a server connection, bytes
/// moved in memory.
pub(super) fn handshake(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
) -> anyhow::Result<()> {
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut c = rustls::ClientConnection::new(client, name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    let mut buf = Vec::new();
    for _ in 0..32 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd)?;
        }
        s.process_new_packets()?;
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd)?;
        }
        c.process_new_packets()?;
    }
    bail!("the handshake did not finish")
}
