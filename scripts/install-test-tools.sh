#!/usr/bin/env bash
# Installs the tools the device agent's and the emulator's tests need:
# Debian's mosquitto broker and clients (an independent MQTT peer with
# mutual TLS; mosquitto_sub/mosquitto_pub drive one rotation by hand against
# the emulator) and openssl (keys and CSRs fleetcert did not make; the independent X.509
# verifier of `fleetcert ca`'s tests).
# Idempotent: does nothing when all of them are already installed.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if have mosquitto && have mosquitto_sub && have mosquitto_pub && have openssl; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq mosquitto mosquitto-clients openssl >/dev/null
have mosquitto && have mosquitto_sub && have mosquitto_pub && have openssl
