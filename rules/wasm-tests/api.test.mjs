// Each export on good input, on bad input, and on wrong JS types: always a
// `{ok, value}` / `{ok: false, error: {kind, message}}` envelope, never a
// thrown exception or a wasm trap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rules, EXPORTS, devicePolicy, deployedStatements } from './helpers.mjs';

const CERT_ID = 'a'.repeat(64);
const NEW_CERT_ID = 'b'.repeat(64);
const MAX_INPUT_BYTES = 1024 * 1024;

function expectError(out, kind) {
  assert.equal(out.ok, false, JSON.stringify(out));
  assert.equal(out.error.kind, kind, JSON.stringify(out));
  assert.equal(typeof out.error.message, 'string');
  assert.ok(out.error.message.length > 0);
  return out.error;
}

test('topicMatches: wildcards, $-topics and invalid arguments (MQTT 3.1.1 §4.7)', () => {
  assert.deepEqual(rules.topicMatches('management/topic/+/csr_res', 'management/topic/d1/csr_res'), { ok: true, value: true });
  assert.equal(rules.topicMatches('management/topic/+/csr_res', 'management/topic/d1/crt_ack').value, false);
  assert.equal(rules.topicMatches('a/#', 'a').value, true); // §4.7.1.2: `#` matches the parent level
  assert.equal(rules.topicMatches('#', '$aws/events/x').value, false); // §4.7.2
  assert.equal(rules.topicMatches('+/events/x', '$aws/events/x').value, false);
  assert.equal(rules.topicMatches('$aws/events/#', '$aws/events/x').value, true);
  expectError(rules.topicMatches('a/#/b', 'a/x/b'), 'invalidFilter');
  expectError(rules.topicMatches('a/b+', 'a/b'), 'invalidFilter');
  expectError(rules.topicMatches('a/+', 'a/+'), 'invalidTopic');
  expectError(rules.topicMatches('', 'a'), 'invalidFilter');
});

test('evaluateRule runs the deployed statements as AWS IoT would', () => {
  const sql = deployedStatements();
  assert.deepEqual(Object.keys(sql).sort(), ['crt_ack', 'crt_err', 'csr_res']);

  const csr = rules.evaluateRule(sql.csr_res, 'management/topic/d1/csr_res', '{"CSR":"pem","clientid":"spoof"}', 'd1', CERT_ID, 1700000000000);
  assert.deepEqual(csr, { ok: true, value: { clientid: 'd1', topicClientId: 'd1', CSR: 'pem' } });

  const ack = rules.evaluateRule(sql.crt_ack, 'management/topic/d1/crt_ack', '{"rotationId":"r1"}', 'd1', NEW_CERT_ID, 0);
  assert.deepEqual(ack.value, { clientid: 'd1', principal: NEW_CERT_ID, topicClientId: 'd1', rotationId: 'r1' });

  // A topic the FROM filter does not match selects nothing.
  assert.deepEqual(rules.evaluateRule(sql.csr_res, 'management/topic/d1/crt_ack', '{}', 'd1', CERT_ID, 0), { ok: true, value: null });
  // WHERE, timestamp() and aliases.
  const where = rules.evaluateRule("SELECT timestamp() AS t FROM 'a/+' WHERE topic(2) = clientid()", 'a/d1', '{}', 'd1', 'p', 42.9);
  assert.deepEqual(where.value, { t: 42 });
  assert.equal(rules.evaluateRule("SELECT * FROM 'a/+' WHERE topic(2) = clientid()", 'a/d2', '{}', 'd1', 'p', 0).value, null);
});

test('evaluateRule refuses SQL outside the subset with its offset, and bad payloads', () => {
  const sql = expectError(rules.evaluateRule("SELECT upper(x) FROM 'a'", 'a', '{}', 'c', 'p', 0), 'sql');
  assert.equal(sql.offset, 7);
  expectError(rules.evaluateRule('DELETE FROM a', 'a', '{}', 'c', 'p', 0), 'sql');
  expectError(rules.evaluateRule("SELECT * FROM 'a'", 'a', 'not json', 'c', 'p', 0), 'malformed');
  expectError(rules.evaluateRule("SELECT * FROM 'a'", 'a', '[1,2]', 'c', 'p', 0), 'eval');
  expectError(rules.evaluateRule("SELECT * FROM 'a'", 'a', ' '.repeat(MAX_INPUT_BYTES + 1), 'c', 'p', 0), 'tooLarge');
  // A non-number timestamp becomes NaN on the way in, which is taken as 0.
  assert.deepEqual(rules.evaluateRule("SELECT timestamp() AS t FROM 'a'", 'a', '{}', 'c', 'p', 'soon').value, { t: 0 });
});

test('route sends each management message to its Lambda with the rule output', () => {
  const csr = rules.route('management/topic/d1/csr_res', '{"CSR":"pem"}', 'd1', CERT_ID, 0);
  assert.deepEqual(csr, { ok: true, value: [{ function: 'csr-issuer', event: { clientid: 'd1', topicClientId: 'd1', CSR: 'pem' } }] });
  const ack = rules.route('management/topic/d1/crt_ack', '{}', 'd1', NEW_CERT_ID, 0);
  assert.equal(ack.value.length, 1);
  assert.equal(ack.value[0].function, 'commit');
  assert.equal(ack.value[0].event.principal, NEW_CERT_ID);
  const err = rules.route('management/topic/d1/crt_err', '{"error":"boom"}', 'd1', CERT_ID, 0);
  assert.equal(err.value[0].function, 'error-handler');
  // A message on another device's topic reaches no function (WHERE topic(3) = clientid()).
  assert.deepEqual(rules.route('management/topic/d2/csr_res', '{"CSR":"pem"}', 'd1', CERT_ID, 0), { ok: true, value: [] });
  // Payload fields are selected by name: a key outside the contract is not passed on.
  const extra = rules.route('management/topic/d1/csr_res', '{"CSR":"pem","clientid":"victim","thing":"x"}', 'd1', CERT_ID, 0);
  assert.deepEqual(extra.value[0].event, { clientid: 'd1', topicClientId: 'd1', CSR: 'pem' });
  // Cloud → device topics and others match no rule.
  assert.deepEqual(rules.route('management/topic/d1/csr_req', '{}', 'd1', CERT_ID, 0), { ok: true, value: [] });
  assert.deepEqual(rules.route('other/topic', '{}', 'd1', CERT_ID, 0), { ok: true, value: [] });
  expectError(rules.route('management/topic/d1/csr_res', '{"CSR":', 'd1', CERT_ID, 0), 'malformed');
  // A payload that is not an object has no fields: only the trusted ones go on (the handler rejects it).
  assert.deepEqual(rules.route('management/topic/d1/csr_res', '"text"', 'd1', CERT_ID, 0).value[0].event, { clientid: 'd1', topicClientId: 'd1' });
  expectError(rules.route('management/topic/d1/csr_res', 'x'.repeat(MAX_INPUT_BYTES + 1), 'd1', CERT_ID, 0), 'tooLarge');
});

test('evaluatePolicy: the synthesized device policy allows own topics only', () => {
  const policy = JSON.stringify(devicePolicy());
  const arn = (kind, name) => `arn:aws:iot:eu-west-1:123456789012:${kind}/${name}`;
  const d1 = JSON.stringify({ clientId: 'd1', thingName: 'd1', isAttached: true });
  const decide = (action, resource, ctx = d1) => rules.evaluatePolicy(policy, action, resource, ctx);

  for (const [action, resource] of [
    ['iot:Connect', arn('client', 'd1')],
    ['iot:Publish', arn('topic', 'management/topic/d1/csr_res')],
    ['iot:Publish', arn('topic', 'management/topic/d1/crt_ack')],
    ['iot:Publish', arn('topic', 'management/topic/d1/crt_err')],
    ['iot:Subscribe', arn('topicfilter', 'management/topic/d1/csr_req')],
    ['iot:Receive', arn('topic', 'management/topic/d1/crt')],
  ]) {
    const out = decide(action, resource);
    assert.deepEqual(out, { ok: true, value: { allowed: true, decision: 'Allow' } }, `${action} ${resource}`);
  }
  for (const [action, resource] of [
    ['iot:Connect', arn('client', 'd2')],
    ['iot:Publish', arn('topic', 'management/topic/d2/csr_res')],
    ['iot:Publish', arn('topic', 'management/topic/d1/csr_req')], // cloud → device only
    ['iot:Subscribe', arn('topicfilter', 'management/topic/+/crt')],
    ['iot:Receive', arn('topic', 'management/topic/d2/crt')],
  ]) {
    const out = decide(action, resource);
    assert.equal(out.ok, true);
    assert.equal(out.value.allowed, false, `${action} ${resource}`);
    assert.equal(out.value.decision, 'ImplicitDeny');
  }
  // Not attached: nothing at all, not even its own topics.
  const detached = JSON.stringify({ clientId: 'd1', thingName: 'd1', isAttached: false });
  assert.equal(decide('iot:Connect', arn('client', 'd1'), detached).value.allowed, false);
  assert.equal(decide('iot:Publish', arn('topic', 'management/topic/d1/csr_res'), detached).value.allowed, false);
});

test('evaluatePolicy: explicit deny wins, and bad documents, actions and contexts are typed errors', () => {
  const allowAll = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'iot:*', Resource: '*' }] };
  const deny = { Version: '2012-10-17', Statement: [{ Effect: 'Deny', Action: 'iot:Publish', Resource: 'arn:aws:iot:*:*:topic/forbidden' }] };
  const ctx = JSON.stringify({ clientId: 'c' });
  const out = rules.evaluatePolicy(JSON.stringify([allowAll, deny]), 'iot:Publish', 'arn:aws:iot:eu-west-1:1:topic/forbidden', ctx);
  assert.equal(out.value.allowed, false);
  assert.ok(out.value.decision.ExplicitDeny !== undefined, JSON.stringify(out));
  assert.equal(rules.evaluatePolicy(JSON.stringify([allowAll, deny]), 'iot:Publish', 'arn:aws:iot:eu-west-1:1:topic/ok', ctx).value.allowed, true);

  expectError(rules.evaluatePolicy('{', 'iot:Publish', 'r', ctx), 'policy');
  expectError(rules.evaluatePolicy('{}', 'iot:Publish', 'r', ctx), 'policy');
  assert.equal(expectError(rules.evaluatePolicy(JSON.stringify([allowAll, { Statement: 5 }]), 'iot:Publish', 'r', ctx), 'policy').policy, 1);
  expectError(rules.evaluatePolicy(JSON.stringify(allowAll), 'iot:Fly', 'r', ctx), 'action');
  expectError(rules.evaluatePolicy(JSON.stringify(allowAll), 'iot:Publish', 'r', '{}'), 'context');
  expectError(rules.evaluatePolicy(JSON.stringify(allowAll), 'iot:Publish', 'r', '{"clientId":"c","extra":1}'), 'context');
  expectError(rules.evaluatePolicy(' '.repeat(MAX_INPUT_BYTES + 1), 'iot:Publish', 'r', ctx), 'tooLarge');
});

// Arguments for each export that are valid strings; each is replaced in turn.
const GOOD_ARGS = {
  validate: ['csr_req', '{}'],
  topicMatches: ['a/+', 'a/b'],
  evaluateRule: ["SELECT * FROM 'a'", 'a', '{}', 'c', 'p', 0],
  route: ['management/topic/d1/csr_res', '{"CSR":"x"}', 'd1', 'p', 0],
  evaluatePolicy: ['{"Version":"2012-10-17","Statement":[]}', 'iot:Publish', 'r', '{"clientId":"c"}'],
  inspectCsr: ['not a csr'],
};
const WRONG = [
  ['number', 5],
  ['number', NaN],
  ['undefined', undefined],
  ['null', null],
  ['object', { CSR: 'x' }],
  ['object', ['x']],
  ['object', new Uint8Array([123, 125])],
  ['boolean', true],
  ['bigint', 10n],
  ['symbol', Symbol('s')],
  ['function', () => '{}'],
];

test('wrong JS types give a `type` error naming the argument, never a trap or a throw', () => {
  assert.deepEqual(Object.keys(GOOD_ARGS).sort(), [...EXPORTS].sort());
  for (const name of EXPORTS) {
    const good = GOOD_ARGS[name];
    good.forEach((arg, i) => {
      if (typeof arg !== 'string') return; // the numeric timestamp
      for (const [found, value] of WRONG) {
        const args = [...good];
        args[i] = value;
        let out;
        assert.doesNotThrow(() => {
          out = rules[name](...args);
        }, `${name} argument ${i} = ${found}`);
        const error = expectError(out, 'type');
        assert.equal(error.found, found, `${name} argument ${i}`);
        assert.equal(typeof error.argument, 'string');
      }
    });
    // Missing arguments altogether.
    expectError(rules[name](), 'type');
  }
  // The instance is still healthy after all of that.
  assert.deepEqual(rules.validate('csr_req', '{}'), { ok: true, value: {} });
});

test('strings that are not valid UTF-16 or hold NULs are handled, not trapped', () => {
  for (const s of ['\ud800', 'a\u0000b', '\uffff', '😀'.repeat(1000)]) {
    assert.equal(typeof rules.validate('crt_err', `{"error":"${s}"}`).ok, 'boolean');
    assert.equal(typeof rules.topicMatches('a/+', `a/${s}`).ok, 'boolean');
    expectError(rules.inspectCsr(s), 'csr');
  }
  // A raw lone surrogate is replaced (U+FFFD) on the way into Rust; an
  // escaped one is not JSON serde accepts.
  assert.deepEqual(rules.validate('crt_err', '{"error":"\ud800"}').value, { error: '\ufffd' });
  expectError(rules.validate('crt_err', JSON.stringify({ error: '\ud800' })), 'malformed');
});
