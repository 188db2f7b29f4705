#!/usr/bin/env bash
# Installs the system libraries autoglm links against, from Debian's packages, when they are missing:
# libpng and libjpeg-turbo (image decoding for the vision models). Run by scripts/test.sh and scripts/autoglm.
set -euo pipefail
missing=()
[ -f /usr/include/png.h ] || [ -f /usr/include/libpng16/png.h ] || missing+=(libpng-dev)
[ -f /usr/include/jpeglib.h ] || [ -f /usr/include/x86_64-linux-gnu/jpeglib.h ] || [ -f /usr/include/aarch64-linux-gnu/jpeglib.h ] \
    || missing+=(libjpeg62-turbo-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]} (image decoding)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
    echo "error: ${missing[*]} are needed and this is not a Debian-like system; install libpng and libjpeg development files" >&2
    exit 1
fi
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
