#!/usr/bin/env bash
# Install the Debian packages ironrack's tests and lab need. Idempotent.
# Each package is here because a test uses the real thing (see the comment).
set -euo pipefail

packages=(
  # keys: third-party verifiers and signers for interop tests
  minisign signify-openbsd
  # pxe/tests/tftp: real TFTP clients (curl tftp:// with --tftp-blksize,
  # atftp with blksize/tsize/windowsize options, tftp-hpa plain and netascii)
  curl atftp tftp-hpa
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
