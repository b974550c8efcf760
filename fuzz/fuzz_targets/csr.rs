//! `csr::inspect_csr`. The first byte picks the mode: even = the input as
//! PEM text; odd = the rest as DER, wrapped in a PEM envelope here, so that
//! the fuzzer reaches the DER parser and signature checks directly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::csr::inspect_csr;

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let pem = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let body = base64(rest);
        let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE REQUEST-----\n");
        pem
    };
    if let Ok(info) = inspect_csr(&pem) {
        assert_eq!(info.public_key_fingerprint.len(), 64);
        // Inspection is deterministic.
        assert_eq!(inspect_csr(&pem).ok(), Some(info));
    }
});
