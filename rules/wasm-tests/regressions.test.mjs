// Fuzzer finds that only show in the wasm build (see rules/tests/regressions.rs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rules } from './helpers.mjs';

// fuzz target `sql`: float literals were read by serde_json's fast path,
// which is not correctly rounded without its `float_roundtrip` feature. The
// native test build gets that feature from a dev-dependency; the wasm (and
// Lambda) builds do not, so this is where the bug showed.
test('SQL number literals are the correctly rounded double of their text', () => {
  for (const text of [
    '1.00000000000000011102230246251565404236316680908203125',
    '4444444444444444244207398',
    '4.4444444444444444e+24',
    '4444444444207397100291444444207398',
    '0.30000000000000000000000000001',
    '2.2250738585072011e-308',
    '-9007199254740993.0',
  ]) {
    const out = rules.evaluateRule(`SELECT ${text} AS n FROM 'a'`, 'a', '{}', 'c', 'p', 0);
    assert.equal(out.ok, true, JSON.stringify(out));
    assert.equal(out.value.n, Number(text), text);
  }
});
