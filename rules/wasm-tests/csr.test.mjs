// inspectCsr on CSRs made at test time by OpenSSL (an independent
// implementation): key, CN and the fingerprint OpenSSL computes for the
// same public key; a tampered CSR is refused as kind "csr".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rules } from './helpers.mjs';

let dir;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetcert-wasm-csr-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function openssl(args) {
  return execFileSync('openssl', args, { cwd: dir, timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh key and CSR for `cn`; returns the CSR PEM and the SHA-256 of the key's DER SubjectPublicKeyInfo. */
function makeCsr(name, keyArgs, cn) {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  openssl(['req', '-new', ...keyArgs, '-nodes', '-keyout', key, '-subj', `/O=fleetcert test/CN=${cn}`, '-out', csr]);
  const spki = openssl(['pkey', '-in', key, '-pubout', '-outform', 'DER']);
  return { pem: readFileSync(csr, 'utf8'), fingerprint: createHash('sha256').update(spki).digest('hex') };
}

function pemToDer(pem) {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function derToPem(der) {
  const lines = der.toString('base64').match(/.{1,64}/g).join('\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines}\n-----END CERTIFICATE REQUEST-----\n`;
}

test('an OpenSSL P-256 CSR: key, CN and fingerprint agree with OpenSSL', () => {
  const { pem, fingerprint } = makeCsr('p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'thing-p256');
  const out = rules.inspectCsr(pem);
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.deepEqual(out.value.key, { kind: 'ecP256' });
  assert.equal(out.value.subjectCn, 'thing-p256');
  assert.equal(out.value.publicKeyFingerprint, fingerprint);
  assert.match(out.value.signatureAlgorithm, /sha256/i);
});

test('an OpenSSL RSA-2048 CSR: key, CN and fingerprint agree with OpenSSL', () => {
  const { pem, fingerprint } = makeCsr('rsa', ['-newkey', 'rsa:2048'], 'thing-rsa');
  const out = rules.inspectCsr(pem);
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.deepEqual(out.value.key, { kind: 'rsa', bits: 2048 });
  assert.equal(out.value.subjectCn, 'thing-rsa');
  assert.equal(out.value.publicKeyFingerprint, fingerprint);
  // The same CSR inside a csr_res payload passes the contract.
  assert.equal(rules.validate('csr_res', JSON.stringify({ CSR: pem })).ok, true);
});

test('a tampered CSR (one bit of the CN flipped) fails its signature check', () => {
  const { pem } = makeCsr('tamper', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'thing-aaaa');
  const der = pemToDer(pem);
  const at = der.indexOf(Buffer.from('thing-aaaa'));
  assert.ok(at > 0, 'CN found in the DER');
  der[at + 6] ^= 0x01; // 'a' -> '`': still a valid DER string, different content
  const out = rules.inspectCsr(derToPem(der));
  assert.equal(out.ok, false, JSON.stringify(out));
  assert.equal(out.error.kind, 'csr');
  assert.match(out.error.message, /signature/);
  // Untouched, the same bytes pass.
  assert.equal(rules.inspectCsr(derToPem(pemToDer(pem))).ok, true);
});

test('not a CSR at all: garbage, a truncated CSR, the wrong PEM label', () => {
  const { pem } = makeCsr('trunc', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'thing-t');
  const der = pemToDer(pem);
  for (const bad of ['', 'hello', derToPem(der.subarray(0, der.length - 10)), pem.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE'), pem.replace(/[A-Za-z0-9]{8}\n/, '!!!!!!!!\n')]) {
    const out = rules.inspectCsr(bad);
    assert.equal(out.ok, false, bad);
    assert.equal(out.error.kind, 'csr');
  }
  const huge = rules.inspectCsr('A'.repeat(1024 * 1024 + 1));
  assert.equal(huge.error.kind, 'tooLarge');
});
