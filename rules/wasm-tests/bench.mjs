// Throughput of the wasm build under Node, one thread, ~0.5 CPU-s per figure,
// and the ratio wasm / native for the same calls (the `js` set of
// `cargo run -p rules --release --example bench`).
//
//   node rules/wasm-tests/bench.mjs                    # runs target/release/examples/bench --json if built
//   node rules/wasm-tests/bench.mjs --native f.json    # native figures from a file (bench --json output)
//   node rules/wasm-tests/bench.mjs --no-native        # wasm figures only
//   node rules/wasm-tests/bench.mjs --rounds 5         # native and wasm paired 5 times, medians
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { rules, workspaceRoot, devicePolicy, deployedStatements } from './helpers.mjs';

const MEASURE_MS = 500;

/**
 * Milliseconds of this thread's CPU time (Linux: /proc/thread-self/schedstat,
 * read on the main thread, which runs the wasm), so that figures are calls
 * per CPU-second and do not fall when other processes share the machine, as
 * the native bench measures; wall time where that file is missing.
 */
function cpuClock() {
  try {
    readFileSync('/proc/thread-self/schedstat', 'utf8');
    return () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return () => performance.now();
  }
}
const now = cpuClock();

/** Calls `f` in growing batches for about MEASURE_MS of CPU time; returns calls per CPU-second. */
function opsPerSec(f) {
  for (let i = 0; i < 3; i++) f();
  const start = now();
  let calls = 0;
  let batch = 1;
  for (;;) {
    for (let i = 0; i < batch; i++) f();
    calls += batch;
    const elapsed = now() - start;
    if (elapsed >= MEASURE_MS) return (calls * 1000) / elapsed;
    if (batch < 1 << 20) batch *= 2;
  }
}

function makeCsr(dir, name, keyArgs) {
  const csr = join(dir, `${name}.csr`);
  execFileSync('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', join(dir, `${name}.key`), '-subj', '/CN=bench-thing', '-out', csr], {
    stdio: 'ignore',
    timeout: 60_000,
  });
  return readFileSync(csr, 'utf8');
}

function nativeFigures(args) {
  if (args.includes('--no-native')) return null;
  const at = args.indexOf('--native');
  if (at >= 0) return JSON.parse(readFileSync(args[at + 1], 'utf8'));
  const exe = join(workspaceRoot, 'target', 'release', 'examples', 'bench');
  if (!existsSync(exe)) {
    console.log(`(no native figures: build them with \`cargo build -p rules --release --example bench\` or pass --native <file>)`);
    return null;
  }
  return JSON.parse(execFileSync(exe, ['--json'], { encoding: 'utf8', timeout: 120_000 }));
}

const dir = mkdtempSync(join(tmpdir(), 'fleetcert-wasm-bench-'));
let rsaCsr;
let p256Csr;
try {
  rsaCsr = makeCsr(dir, 'rsa', ['-newkey', 'rsa:2048']);
  p256Csr = makeCsr(dir, 'p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const topic = 'management/topic/bench-thing/csr_res';
const principal = '0'.repeat(64);
const payload = JSON.stringify({ CSR: rsaCsr, rotationId: 'r-0001' });
// MQTT clients (mqtt.js) hand payloads over as Buffers.
const payloadBytes = Buffer.from(payload);
const policy = JSON.stringify(devicePolicy());
const own = 'arn:aws:iot:eu-west-1:123456789012:topic/management/topic/bench-thing/csr_res';
const other = 'arn:aws:iot:eu-west-1:123456789012:topic/management/topic/other-thing/csr_res';
const ctx = JSON.stringify({ clientId: 'bench-thing', thingName: 'bench-thing', isAttached: true });
const sql = deployedStatements().csr_res;

// Sanity: the measured calls do what they say.
const check = (cond, what) => {
  if (!cond) throw new Error(`bench sanity check failed: ${what}`);
};
check(rules.validate('csr_res', payload).ok, 'csr_res validates');
check(rules.route(topic, payload, 'bench-thing', principal, 0).value.length === 1, 'csr_res routes');
check(rules.inbound(topic, payloadBytes, 'bench-thing', principal, 0).value.routed.length === 1, 'csr_res inbound');
check(rules.inspectCsr(rsaCsr).value.key.bits === 2048, 'RSA-2048 CSR');
check(rules.inspectCsr(p256Csr).value.key.kind === 'ecP256', 'P-256 CSR');
check(rules.evaluatePolicy(policy, 'iot:Publish', own, ctx).value.allowed, 'own topic allowed');
check(!rules.evaluatePolicy(policy, 'iot:Publish', other, ctx).value.allowed, 'other topic denied');
check(rules.evaluateRule(sql, topic, payload, 'bench-thing', principal, 0).value.clientid === 'bench-thing', 'rule output');

const cases = [
  ['validate csr_res', () => rules.validate('csr_res', payload)],
  ['route', () => rules.route(topic, payload, 'bench-thing', principal, 0)],
  ['validate+route csr_res', () => {
    rules.validate('csr_res', payload);
    rules.route(topic, payload, 'bench-thing', principal, 0);
  }],
  ['inbound csr_res', () => rules.inbound(topic, payloadBytes, 'bench-thing', principal, 0)],
  ['inspect_csr RSA-2048', () => rules.inspectCsr(rsaCsr)],
  ['inspect_csr P-256', () => rules.inspectCsr(p256Csr)],
  ['policy allow', () => rules.evaluatePolicy(policy, 'iot:Publish', own, ctx)],
  ['policy deny', () => rules.evaluatePolicy(policy, 'iot:Publish', other, ctx)],
  ['sql evaluate csr_res', () => rules.evaluateRule(sql, topic, payload, 'bench-thing', principal, 0)],
];

const native = nativeFigures(process.argv.slice(2));

// Rounds: each round measures native (a fresh run of the native bench, when
// it is built) and then wasm, and the ratio is taken per round; the median
// round is printed. A machine shared with other work drifts between runs,
// and pairing the two measurements in time keeps the ratio honest.
const roundsAt = process.argv.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Math.max(1, Number(process.argv[roundsAt + 1]) || 1) : 1;
const fromExe = native !== null && !process.argv.includes('--native');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = cases.map(([name]) => ({ name, wasm: [], native: [], ratio: [] }));
for (let round = 0; round < rounds; round++) {
  const nativeNow = round === 0 || !fromExe ? native : nativeFigures([]);
  cases.forEach(([name, f], i) => {
    const rate = opsPerSec(f);
    const n = nativeNow?.find((x) => x.set === 'js' && x.name === name)?.opsPerSec;
    results[i].wasm.push(rate);
    if (n) {
      results[i].native.push(n);
      results[i].ratio.push(rate / n);
    }
  });
}

console.log(`rules bench, wasm under Node ${process.version}, one thread, ~${MEASURE_MS} ms of CPU per figure, ${rounds} round(s), median shown`);
console.log(`csr_res payload: ${payload.length} bytes (RSA-2048 CSR)`);
console.log(`${'call'.padEnd(26)} ${'wasm ops/s'.padStart(12)} ${'native ops/s'.padStart(13)} ${'wasm/native'.padStart(11)}`);
for (const r of results) {
  const n = r.native.length ? median(r.native) : null;
  const ratio = r.ratio.length ? median(r.ratio).toFixed(2) : '-';
  console.log(`${r.name.padEnd(26)} ${median(r.wasm).toFixed(0).padStart(12)} ${n ? n.toFixed(0).padStart(13) : '-'.padStart(13)} ${ratio.padStart(11)}`);
}
