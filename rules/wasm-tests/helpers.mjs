// Shared by the wasm tests and the benchmark: loads the Node package that
// `cargo xtask wasm` builds into rules/pkg/ (CommonJS, via createRequire).
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const rulesDir = join(here, '..');
export const workspaceRoot = join(rulesDir, '..');
export const samplesDir = join(rulesDir, 'tests', 'samples');

const pkgDir = join(rulesDir, 'pkg');
if (!existsSync(join(pkgDir, 'rules.js'))) {
  throw new Error(`${pkgDir}/rules.js is missing: run \`cargo xtask wasm\` first`);
}
const require = createRequire(import.meta.url);
/** The wasm-bindgen package: validate, topicMatches, evaluateRule, route, evaluatePolicy, inspectCsr. */
export const rules = require(pkgDir);

/** The six exports, by name. */
export const EXPORTS = ['validate', 'topicMatches', 'evaluateRule', 'route', 'evaluatePolicy', 'inspectCsr'];

/** The JSON after the second `---` line of an insta snapshot. */
export function snapshotJson(relativePath) {
  const text = readFileSync(join(workspaceRoot, relativePath), 'utf8');
  const parts = text.split(/^---$/m);
  return JSON.parse(parts.slice(2).join('---'));
}

/**
 * fleetcert's device policy as the synthesized CloudFormation template has
 * it (infra's snapshot), with `Fn::Sub` resolved for one account the way
 * CloudFormation would: `${AWS::…}` substituted, `${!x}` unescaped to `${x}`.
 */
export function devicePolicy({ partition = 'aws', region = 'eu-west-1', account = '123456789012' } = {}) {
  const doc = snapshotJson('infra/tests/snapshots/template__device_policy.snap');
  const pseudo = { 'AWS::Partition': partition, 'AWS::Region': region, 'AWS::AccountId': account };
  const sub = (s) =>
    s.replace(/\$\{(!?)([^}]+)\}/g, (whole, bang, name) => {
      if (bang) return `\${${name}}`;
      if (name in pseudo) return pseudo[name];
      throw new Error(`unresolved Fn::Sub variable ${whole}`);
    });
  const resolve = (v) => {
    if (Array.isArray(v)) return v.map(resolve);
    if (v && typeof v === 'object') {
      if ('Fn::Sub' in v) return sub(v['Fn::Sub']);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
    }
    return v;
  };
  return resolve(doc);
}

/** The topic rule statements the synthesized template deploys, keyed by topic suffix. */
export function deployedStatements() {
  const template = snapshotJson('infra/tests/snapshots/template__whole_template.snap');
  const out = {};
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'AWS::IoT::TopicRule') continue;
    const sql = resource.Properties.TopicRulePayload.Sql;
    const m = /FROM '[^']*\/([a-z_]+)'/.exec(sql);
    if (m) out[m[1]] = sql;
  }
  return out;
}
