// Smoke test of every wasm export: each returns the {ok, value} / {ok:false,
// error:{kind, message}} envelope, never throws on bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const rules = require('../pkg');

test('validate accepts the seed wire format and names a bad field', () => {
  assert.deepEqual(rules.validate('csr_req', '{}'), { ok: true, value: {} });
  const bad = rules.validate('crt_err', '{"error": 5}');
  assert.equal(bad.ok, false);
  assert.equal(bad.error.kind, 'invalid');
  assert.equal(bad.error.path, '/error');
});

test('topicMatches refuses an invalid filter with a structured error', () => {
  assert.deepEqual(rules.topicMatches('management/topic/+/csr_res', 'management/topic/d1/csr_res'), { ok: true, value: true });
  assert.equal(rules.topicMatches('a/#/b', 'a').error.kind, 'invalidFilter');
});

test('route hands the csr issuer clientid and topicClientId', () => {
  const out = rules.route('management/topic/d1/csr_res', '{"CSR":"x","clientid":"spoof"}', 'd1', 'cert', 1);
  assert.equal(out.ok, true);
  assert.equal(out.value.length, 1);
  assert.equal(out.value[0].function, 'csr-issuer');
  assert.equal(out.value[0].event.clientid, 'd1');
  assert.equal(out.value[0].event.topicClientId, 'd1');
});

test('evaluateRule names the byte offset of an unsupported function', () => {
  const out = rules.evaluateRule("SELECT foo() FROM 'a'", 'a', '{}', 'c', 'p', 0);
  assert.equal(out.ok, false);
  assert.equal(out.error.kind, 'sql');
  assert.equal(out.error.offset, 7);
});

test('inspectCsr and evaluatePolicy refuse garbage', () => {
  assert.equal(rules.inspectCsr('hello').error.kind, 'csr');
  assert.equal(rules.evaluatePolicy('{}', 'iot:Publish', 'arn:aws:iot:us-east-1:1:topic/a', '{"clientId":"a"}').error.kind, 'policy');
});
