// The same bad (and good) inputs as the Rust contract tests: every sample
// under rules/tests/samples/<contract>/{valid,invalid} gets its folder's
// verdict from the wasm build, and exactly the envelope native code gives
// (error kind, JSON pointer path, message), as printed by
// `cargo run -p rules --example sample_envelopes`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { rules, samplesDir, workspaceRoot } from './helpers.mjs';

const KINDS = new Set(['tooLarge', 'malformed', 'invalid']);

function samples() {
  const out = [];
  for (const contract of readdirSync(samplesDir).sort()) {
    for (const folder of ['valid', 'invalid']) {
      const dir = join(samplesDir, contract, folder);
      if (!existsSync(dir)) continue;
      for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
        out.push({ contract, folder, key: `${contract}/${folder}/${file}`, payload: readFileSync(join(dir, file), 'utf8') });
      }
    }
  }
  return out;
}

const all = samples();

test('every sample gets the verdict its folder names', () => {
  assert.ok(all.length >= 90, `only ${all.length} samples found in ${samplesDir}`);
  const wrong = [];
  for (const { contract, folder, key, payload } of all) {
    const out = rules.validate(contract, payload);
    if (out.ok !== (folder === 'valid')) wrong.push(`${key}: ${JSON.stringify(out)}`);
    if (!out.ok) {
      if (!KINDS.has(out.error.kind)) wrong.push(`${key}: unexpected kind ${out.error.kind}`);
      if (typeof out.error.message !== 'string' || out.error.message === '') wrong.push(`${key}: no message`);
      if (out.error.kind === 'invalid' && typeof out.error.path !== 'string') wrong.push(`${key}: no path`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('invalid samples get the same error kind, path and message as native code', () => {
  const cargo = process.env.CARGO ?? 'cargo';
  const stdout = execFileSync(cargo, ['run', '-q', '-p', 'rules', '--example', 'sample_envelopes'], {
    cwd: workspaceRoot,
    encoding: 'utf8',
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const native = JSON.parse(stdout);
  assert.deepEqual(Object.keys(native).sort(), all.map((s) => s.key).sort());
  for (const { contract, key, payload } of all) {
    assert.deepEqual(rules.validate(contract, payload), native[key], key);
  }
});

test('a payload over 128 KiB is refused by size before it is parsed', () => {
  const payload = JSON.stringify({ CSR: 'A'.repeat(128 * 1024) });
  const out = rules.validate('csr_res', payload);
  assert.equal(out.ok, false);
  assert.equal(out.error.kind, 'tooLarge');
  assert.equal(out.error.size, payload.length);
  assert.equal(out.error.max, 128 * 1024);
  // Not even JSON: still a size refusal, not a parse error.
  assert.equal(rules.validate('csr_res', '{'.repeat(200 * 1024)).error.kind, 'tooLarge');
});

test('an unknown contract name is a structured error listing the known ones', () => {
  const out = rules.validate('csr_response', '{}');
  assert.equal(out.ok, false);
  assert.equal(out.error.kind, 'unknownContract');
  assert.equal(out.error.name, 'csr_response');
  assert.match(out.error.message, /`csr_res`/);
});
