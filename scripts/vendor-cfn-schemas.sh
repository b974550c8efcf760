#!/usr/bin/env bash
# Copies the AWS resource provider schemas fleetcert's stack uses from
# cfn-lint's bundled data (us-east-1 provider map) into infra/cfn-schemas/,
# untouched. Corrections belong in xtask/src/cfn_patches.rs, not here.
# After running it, update infra/cfn-schemas/README.md and run `cargo xtask codegen`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/install-infra-tools.sh"
"$ROOT/.tools/venv-cfnlint/bin/python" - "$ROOT/infra/cfn-schemas" <<'PY'
import json, os, shutil, sys, cfnlint
out = sys.argv[1]
schemas = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas")
base = os.path.join(schemas, "providers")
providers = json.load(open(os.path.join(base, "us-east-1.json")))
types = [
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::DynamoDB::Table",
    "AWS::Events::Rule",
    "AWS::IAM::Role",
    "AWS::IoT::AccountAuditConfiguration",
    "AWS::IoT::CACertificate",
    "AWS::IoT::Policy",
    "AWS::IoT::ScheduledAudit",
    "AWS::IoT::TopicRule",
    "AWS::KMS::Key",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::Function",
    "AWS::Lambda::Permission",
    "AWS::Logs::LogGroup",
    "AWS::SNS::Topic",
    "AWS::SQS::Queue",
]
os.makedirs(out, exist_ok=True)
for t in types:
    src = os.path.join(schemas, "resources", providers[t] + ".json")
    dst = os.path.join(out, t.lower().replace("::", "-") + ".json")
    shutil.copyfile(src, dst)
    print(f"{t} -> {os.path.relpath(dst)}")
print("cfn-lint", cfnlint.__version__ if hasattr(cfnlint, "__version__") else "")
PY
"$ROOT/.tools/venv-cfnlint/bin/cfn-lint" --version
