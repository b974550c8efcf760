#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time each.
#
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
#
# Installs cargo-fuzz when missing (idempotent), seeds each corpus from
# rules/tests/samples, the deployed rule statements, the device policy and
# CSRs made now with openssl (never committed), then runs the targets one
# after another with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags; the
# stable toolchain allows them with that variable). Crashes are written to
# fuzz/artifacts/<target>/; turn each into a test in rules/tests/regressions.rs.
# Logs: fuzz/logs/<target>.log (last line: exec count, exec/s, coverage).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(contracts sql csr policy topic)
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz
fi

fuzz="$root/fuzz"
corpus="$fuzz/corpus"
mkdir -p "$corpus"/{contracts,sql,csr,policy,topic} "$fuzz/logs"

# contracts: <contract pick byte><payload>; the target picks
# Contract::ALL[byte % 13], so each sample is seeded under every pick.
i=0
for sample in "$root"/rules/tests/samples/*/*/*.json; do
  for pick in $(seq 0 12); do
    { printf "\\x$(printf %02x "$pick")"; cat "$sample"; } >"$corpus/contracts/seed-$i-$pick"
  done
  i=$((i + 1))
done

cat >"$corpus/sql/seed-csr_res" <<'SQL'
SELECT clientid() as clientid, topic(3) as topicClientId, * FROM 'management/topic/+/csr_res'
SQL
cat >"$corpus/sql/seed-crt_ack" <<'SQL'
SELECT clientid() as clientid, principal() as principal, topic(3) as topicClientId, * FROM 'management/topic/+/crt_ack' WHERE topic(3) = clientid() AND (timestamp() > 5 OR rotationId <> 'x')
SQL
printf "SELECT * FROM '\$aws/events/certificates/registered/ab'" >"$corpus/sql/seed-jitr"

# The device policy as committed in rules' insta snapshot (after the header).
awk 'n >= 2 { print } /^---$/ { n++ }' "$root/rules/src/snapshots/rules__policy__tests__device_policy_snapshot.snap" \
  | sed 's/\${AWS::Partition}/aws/; s/\${AWS::Region}/eu-west-1/; s/\${AWS::AccountId}/123456789012/' >"$corpus/policy/seed-device"
printf '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["iot:*"],"Resource":"*"}]}' >"$corpus/policy/seed-deny"

printf 'management/topic/+/csr_res\0management/topic/d1/csr_res' >"$corpus/topic/seed-1"
printf '#\0$aws/events/x' >"$corpus/topic/seed-2"
printf 'a/#\0a' >"$corpus/topic/seed-3"

if command -v openssl >/dev/null; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for spec in "rsa:2048" "ec -pkeyopt ec_paramgen_curve:P-256" "ec -pkeyopt ec_paramgen_curve:P-384" \
    "rsa:2048 -sigopt rsa_padding_mode:pss" "rsa:2048 -sha512 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"; do
    name="$(echo "$spec" | tr -c 'a-zA-Z0-9' '_')"
    # shellcheck disable=SC2086
    openssl req -new -newkey $spec -nodes -keyout "$tmp/k" -subj "/CN=fuzz-thing" -out "$tmp/csr.pem" 2>/dev/null
    { printf '\x00'; cat "$tmp/csr.pem"; } >"$corpus/csr/seed-pem-$name"
    { printf '\x01'; openssl req -in "$tmp/csr.pem" -outform DER; } >"$corpus/csr/seed-der-$name"
  done
fi

cd "$fuzz"
cargo fuzz build -O
status=0
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  if cargo fuzz run -O "$target" "$corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"$fuzz/logs/$target.log" 2>&1; then
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$fuzz/logs/$target.log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$fuzz/logs/$target.log" || true
  else
    status=1
    echo "!! $target found a crash, see $fuzz/logs/$target.log and $fuzz/artifacts/$target/"
    grep -E 'panicked|SUMMARY|Test unit written' "$fuzz/logs/$target.log" | head -5 || true
  fi
done
exit "$status"
