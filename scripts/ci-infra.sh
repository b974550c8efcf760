#!/usr/bin/env bash
# Everything infra needs, for the lead's single test command. Idempotent on a
# fresh machine (Rust, Python 3.11 + pip, Node 20 + npm, gcc):
#   1. installs cfn-lint + moto, checkov, aws-cdk@2.1148.1 into .tools/
#   2. `cargo run` synthesizes cdk.out/
#   3. cfn-lint (zero errors and warnings) and checkov (zero failed checks),
#      on the default stack and on one whose issuer is AWS Private CA
#   4. `cdk synth` and `cdk ls` with the pinned CLI
#   5. `cdk bootstrap` + `cdk deploy` against moto on 127.0.0.1, asserting
#      CREATE_COMPLETE and the Lambda code published (skip with SKIP_MOTO=1)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-infra-tools.sh
T="$ROOT/.tools"
export PATH="$T/node/node_modules/.bin:$PATH"
STACK=FleetcertStack

echo "== synth (cargo run)"
cargo run --quiet --bin fleetcert -- synth
TEMPLATE="cdk.out/$STACK.template.json"

echo "== cfn-lint $("$T/venv-cfnlint/bin/cfn-lint" --version)"
"$T/venv-cfnlint/bin/cfn-lint" --non-zero-exit-code informational "$TEMPLATE"

echo "== checkov"
"$T/venv-checkov/bin/checkov" -f "$TEMPLATE" --framework cloudformation --compact --quiet --skip-download

echo "== cfn-lint and checkov on a stack whose issuer is AWS Private CA ([issuer] kind = \"private_ca\")"
PCA_DIR="$(mktemp -d)"
cat >"$PCA_DIR/fleetcert.toml" <<'TOML'
[issuer]
kind = "private_ca"
ca_arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0b9e8f1c-5a0d-4c8e-9a1b-2f3c4d5e6f70"
signing_algorithm = "SHA256WITHECDSA"
TOML
cargo run --quiet --bin fleetcert -- synth --config "$PCA_DIR/fleetcert.toml" --out "$PCA_DIR/out" >/dev/null
"$T/venv-cfnlint/bin/cfn-lint" --non-zero-exit-code informational "$PCA_DIR/out/$STACK.template.json"
"$T/venv-checkov/bin/checkov" -f "$PCA_DIR/out/$STACK.template.json" --framework cloudformation --compact --quiet --skip-download
rm -rf "$PCA_DIR"

echo "== cdk synth / cdk ls ($(cdk --version))"
CDK_DISABLE_VERSION_CHECK=1 cdk synth --quiet --no-notices
[[ "$(CDK_DISABLE_VERSION_CHECK=1 cdk ls --no-notices)" == "$STACK" ]]

if [[ "${SKIP_MOTO:-}" == 1 ]]; then exit 0; fi
echo "== cdk bootstrap + deploy against moto"
WORK="$(mktemp -d)"
PORT="${MOTO_PORT:-5123}"
"$T/venv-cfnlint/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$PORT/moto-api/" >/dev/null && break; sleep 0.2; done

# The Lambda zips: `cargo xtask lambdas` output when present, otherwise a
# real tiny `bootstrap` executable compiled here (moto never runs it).
LAMBDA_DIR="${CARGO_TARGET_DIR:-target}/lambda"
if [[ ! -f "$LAMBDA_DIR/commit/bootstrap.zip" ]]; then
  LAMBDA_DIR="$WORK/lambda"
  printf 'int main(void){return 0;}\n' >"$WORK/bootstrap.c"
  gcc -O2 -static -o "$WORK/bootstrap" "$WORK/bootstrap.c" 2>/dev/null || gcc -O2 -o "$WORK/bootstrap" "$WORK/bootstrap.c"
  for f in audit-fanout rotation-starter csr-issuer commit error-handler sweeper jitr-activator; do
    mkdir -p "$LAMBDA_DIR/$f"
    python3 - "$WORK/bootstrap" "$LAMBDA_DIR/$f/bootstrap.zip" "$f" <<'PY'
import sys, zipfile
src, dst, name = sys.argv[1:]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o755 << 16
    z.writestr(info, open(src, "rb").read() + name.encode())
PY
  done
fi

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 CDK_DISABLE_VERSION_CHECK=1
ACCOUNT=123456789012
# The toolkit stack from the CLI's own bootstrap template, created with
# CreateStack instead of `cdk bootstrap`: moto renders a stack's Outputs on
# CreateStack but not through a change set (what `cdk bootstrap` uses), and
# the CLI reads the toolkit's BucketName output to upload a template over
# 50 KiB, which fleetcert's is since its alarms and dashboard. Against AWS,
# `cdk bootstrap` makes the same stack.
"$T/venv-cfnlint/bin/python" - "$T/node/node_modules/aws-cdk/lib/api/bootstrap/bootstrap-template.yaml" >"$WORK/bootstrap.log" 2>&1 <<'PY' || { cat "$WORK/bootstrap.log"; exit 1; }
import sys, boto3
cfn = boto3.client("cloudformation")
cfn.create_stack(StackName="CDKToolkit", TemplateBody=open(sys.argv[1]).read(),
                 Capabilities=["CAPABILITY_NAMED_IAM"])
outputs = {o["OutputKey"] for o in cfn.describe_stacks(StackName="CDKToolkit")["Stacks"][0].get("Outputs", [])}
assert {"BucketName", "BootstrapVersion"} <= outputs, outputs
PY
cdk deploy "$STACK" --require-approval never --no-notices \
  --app "cargo run --quiet --bin fleetcert -- synth --lambda-dir $LAMBDA_DIR" >"$WORK/deploy.log" 2>&1 \
  || { cat "$WORK/deploy.log"; exit 1; }
"$T/venv-cfnlint/bin/python" - "$STACK" "cdk.out/$STACK.template.json" <<'PY'
import sys, boto3
stack = sys.argv[1]
cfn = boto3.client("cloudformation")
status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
assert status == "CREATE_COMPLETE", status
resources = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
functions = [r for r in resources if r["ResourceType"] == "AWS::Lambda::Function"]
assert len(functions) == 7 and all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in functions), functions
# the code each function points at is published in the bootstrap bucket
# (moto's Lambda read APIs need docker, so read the template's S3 keys)
import json
template = json.load(open(sys.argv[2]))  # the assembly `cdk deploy` just synthesized
s3 = boto3.client("s3")
bucket = "cdk-hnb659fds-assets-123456789012-us-east-1"
names = []
for rid, r in template["Resources"].items():
    if r["Type"] == "AWS::Lambda::Function":
        key = r["Properties"]["Code"]["S3Key"]
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] > 0, (rid, key)
        names.append(rid)
assert len(names) == 7, names
# the dashboard (moto creates no AWS::CloudWatch::Alarm from a template, and
# evaluates no alarm: infra/tests/watch.rs evaluates the alarm definitions)
cw = boto3.client("cloudwatch")
alarms = sum(1 for v in template["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm")
dashboards = cw.list_dashboards()["DashboardEntries"]
assert len(dashboards) == 1, dashboards
body = json.loads(cw.get_dashboard(DashboardName=dashboards[0]["DashboardName"])["DashboardBody"])
assert any(m[0] == "fleetcert" for w in body["widgets"] for m in w["properties"].get("metrics", []) if isinstance(m[0], str)), body
print(f"moto deploy: {stack} {status}, {len(names)} functions with code published, the dashboard ({alarms} alarms in the template)")
PY
echo "infra checks: 5 passed, 0 failed"
