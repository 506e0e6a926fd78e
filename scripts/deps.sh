#!/usr/bin/env bash
# Install the Debian packages ironrack's tests and lab need. Idempotent.
# Each package is here because a test uses the real thing (see the comment).
set -euo pipefail

packages=(
  # keys: third-party verifiers and signers for interop tests
  minisign signify-openbsd
  # pxe: real DHCP clients (udhcpc, and udhcpd as a site's own DHCP server
  # beside the proxy) and `ip netns` for pxe/tests/dhcp_netns.rs
  busybox-static isc-dhcp-client iproute2
  # pxe: real boot firmware against the DHCP server (pxe/tests/dhcp_firmware.rs):
  # SeaBIOS + the NIC's iPXE ROM, and OVMF's UEFI PXE, under qemu
  qemu-system-x86 ovmf ipxe-qemu
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
