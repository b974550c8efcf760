#!/usr/bin/env bash
# Installs the tools the device agent's tests need: Debian's mosquitto
# broker and clients (an independent MQTT peer with mutual TLS).
# Idempotent: does nothing when `mosquitto` is already installed.
set -euo pipefail

if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
