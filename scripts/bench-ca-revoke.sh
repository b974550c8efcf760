#!/usr/bin/env bash
# Measures how `fleetcert ca revoke` paces UpdateCertificate calls: revokes
# N unknown certificate ids (each answered ResourceNotFound by a local moto
# server on 127.0.0.1, so every call reaches the API and the batch goes on)
# at each --rate given, and prints calls per second. The pace must never
# exceed --rate (AWS's UpdateCertificate quota is 10/s).
# Usage: scripts/bench-ca-revoke.sh [N] [rate...]   (default: 50 ids, rates 10 25)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
shift || true
rates=("${@:-10 25}")
read -r -a rates <<<"${rates[*]}"

moto=.tools/venv-cfnlint/bin/moto_server
[ -x "$moto" ] || { echo "missing $moto: run bash scripts/install-infra-tools.sh" >&2; exit 1; }
cargo build -q -p cli --features ca
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
ids=()
for i in $(seq 1 "$n"); do ids+=("$(printf '%064d' "$i")"); done
# Warm-up: moto loads its IoT backend on the first call (seconds).
target/debug/fleetcert ca revoke "${ids[0]}" --yes \
  --endpoint-url "http://127.0.0.1:$port" --region us-east-1 >/dev/null 2>&1 || true
for rate in "${rates[@]}"; do
  start=$(date +%s.%N)
  rc=0
  target/debug/fleetcert ca revoke "${ids[@]}" --yes --rate "$rate" \
    --endpoint-url "http://127.0.0.1:$port" --region us-east-1 >/dev/null 2>&1 || rc=$?
  end=$(date +%s.%N)
  python3 -c "
n, rate, s, e, rc = $n, $rate, $start, $end, $rc
t = e - s
print(f'--rate {rate}: {n} UpdateCertificate calls in {t:.2f} s = {n / t:.1f} calls/s '
      f'(bound {rate}/s, floor {(n - 1) / rate:.2f} s; exit {rc})')"
done
