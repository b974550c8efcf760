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

test('inbound validates a Buffer payload against its topic contract, then routes it', () => {
  const topic = 'management/topic/d1/crt_ack';
  const out = rules.inbound(topic, Buffer.from('{"rotationId":"r-1"}'), 'd1', 'cert', 1);
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.equal(out.value.contract, 'crt_ack');
  assert.equal(out.value.routed.length, 1);
  assert.equal(out.value.routed[0].function, 'commit');
  assert.equal(out.value.routed[0].event.clientid, 'd1');
  // The same as a string.
  assert.deepEqual(rules.inbound(topic, '{"rotationId":"r-1"}', 'd1', 'cert', 1), out);
  // Refused by the contract: the contract's error, nothing routed.
  const bad = rules.inbound('management/topic/d1/crt_err', Buffer.from('{"error": 5}'), 'd1', 'cert', 1);
  assert.equal(bad.ok, false);
  assert.equal(bad.error.kind, 'invalid');
  assert.equal(bad.error.path, '/error');
  assert.equal(rules.inbound(topic, Buffer.from([0x7b, 0xff]), 'd1', 'cert', 1).error.kind, 'malformed');
  // Neither bytes nor a string: a type error, not a throw.
  assert.equal(rules.inbound(topic, 42, 'd1', 'cert', 1).error.kind, 'type');
  assert.equal(rules.inbound(topic, { a: 1 }, 'd1', 'cert', 1).error.argument, 'payload');
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
