#!/bin/sh
# Installs every Debian package reel needs to build, test and run its demo.
# Idempotent: packages already present are left alone, so a second run is fast.
set -eu

PACKAGES="build-essential cmake pkg-config git ca-certificates
librdkafka-dev libavro-dev libopenblas-dev libhiredis-dev libsndfile1-dev
libmicrohttpd-dev libcmocka-dev libjansson-dev libjpeg-dev libpng-dev zlib1g-dev
dataset-fashion-mnist espeak-ng
libsamplerate0-dev clang libclang-rt-14-dev redis-server redis-tools kafkacat jq procps curl python3 python3-yaml
python3-numpy python3-pil openssl"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
