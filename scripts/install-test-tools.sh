#!/usr/bin/env bash
# Installs the Debian tools the tests need: mosquitto broker and clients (an
# independent MQTT peer with mutual TLS, for the device agent's tests) and
# the openssl CLI (an independent X.509 verifier, for `fleetcert ca`'s tests).
# Idempotent: installs only what is missing.
set -euo pipefail

pkgs=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    pkgs+=(mosquitto mosquitto-clients)
fi
if ! command -v openssl >/dev/null 2>&1; then
    pkgs+=(openssl)
fi
if [ "${#pkgs[@]}" -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
command -v openssl >/dev/null 2>&1
