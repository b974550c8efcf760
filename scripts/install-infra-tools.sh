#!/usr/bin/env bash
# Installs the tools the infra checks need into `.tools/` (git-ignored),
# idempotently: each tool is skipped when the pinned version is already there.
#
#   .tools/venv-cfnlint   cfn-lint + moto[server]   (pip venv; moto brings boto3 and cryptography,
#                         which harness/tests/boto3_api.rs drives the emulator's API with)
#   .tools/venv-checkov   checkov                   (its own venv: its pins clash)
#   .tools/node           aws-cdk@2.1148.1          (npm, pinned: `latest` is older)
#
# Needs only Python 3.11 + pip and Node 20 + npm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.58.0}"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
CDK_VERSION="2.1148.1"
mkdir -p "$TOOLS"

pinned() { # name version -> pip requirement
  if [[ -n "$2" ]]; then echo "$1==$2"; else echo "$1"; fi
}

if [[ ! -x "$TOOLS/venv-cfnlint/bin/cfn-lint" || ! -x "$TOOLS/venv-cfnlint/bin/moto_server" ]]; then
  echo "installing cfn-lint and moto into $TOOLS/venv-cfnlint" >&2
  python3 -m venv "$TOOLS/venv-cfnlint"
  "$TOOLS/venv-cfnlint/bin/pip" install --quiet --disable-pip-version-check \
    "$(pinned cfn-lint "$CFN_LINT_VERSION")" "moto[server]$( [[ -n $MOTO_VERSION ]] && echo "==$MOTO_VERSION")"
fi

if [[ ! -x "$TOOLS/venv-checkov/bin/checkov" ]]; then
  echo "installing checkov into $TOOLS/venv-checkov" >&2
  python3 -m venv "$TOOLS/venv-checkov"
  "$TOOLS/venv-checkov/bin/pip" install --quiet --disable-pip-version-check "$(pinned checkov "$CHECKOV_VERSION")"
fi

if [[ "$("$TOOLS/node/node_modules/.bin/cdk" --version 2>/dev/null | cut -d' ' -f1)" != "$CDK_VERSION" ]]; then
  echo "installing aws-cdk@$CDK_VERSION into $TOOLS/node" >&2
  mkdir -p "$TOOLS/node"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/node" "aws-cdk@$CDK_VERSION"
fi
