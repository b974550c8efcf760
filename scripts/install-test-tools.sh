#!/usr/bin/env bash
# Installs the tools the device agent's and the emulator's tests need:
# Debian's mosquitto broker and clients (an independent MQTT peer with
# mutual TLS; mosquitto_sub/mosquitto_pub drive one rotation by hand against
# the emulator) and openssl (keys and CSRs fleetcert did not make; the independent X.509
# verifier of `fleetcert ca`'s tests), and AWS's IoT Device SDK for Python
# (awsiotsdk, from PyPI, into .tools/venv-iotsdk: firmware fleetcert did not
# write, rotating against `fleetcert emulate`).
# Idempotent: does nothing when all of them are already installed.
set -euo pipefail

cd "$(dirname "$0")/.."
AWSIOTSDK_VERSION=1.31.0
venv=.tools/venv-iotsdk
if ! "$venv/bin/python" -c "import awsiot, awscrt" >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "awsiotsdk==$AWSIOTSDK_VERSION"
fi

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
