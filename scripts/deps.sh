#!/usr/bin/env bash
# Install the Debian packages ironrack's tests and lab need. Idempotent.
# Each package is here because a test uses the real thing (see the comment).
set -euo pipefail

packages=(
  # keys: third-party verifiers and signers for interop tests
  minisign signify-openbsd
  # builder tests/pe.rs: objcopy assembles a UKI from the real
  # systemd-boot-efi stub (real .debs are fetched with apt-get download);
  # builder/tests/source: GNU ar writes the long-name archives our reader reads
  binutils
  # pxe: TPM tests run a real swtpm (pxe/tests/tpm/*.rs); swtpm-tools gives
  # swtpm_setup/swtpm_localca, which manufacture EK certificates
  swtpm swtpm-tools
  # pxe: GnuTLS certtool re-issues EK certificates in the EK checks tests
  gnutls-bin
  # pxe: real DHCP clients (udhcpc, and udhcpd as a site's own DHCP server
  # beside the proxy) and `ip netns` for pxe/tests/dhcp_netns.rs
  busybox-static isc-dhcp-client iproute2
  # pxe: real boot firmware against the DHCP server (pxe/tests/dhcp_firmware.rs):
  # SeaBIOS + the NIC's iPXE ROM, and OVMF's UEFI PXE, under qemu
  qemu-system-x86 ovmf ipxe-qemu
  # builder/tests/source: dpkg --compare-versions, dpkg-deb --build/--info/
  # --contents/-x/-e, apt-get update/apt-cache/apt-get -s against generated
  # repositories; gpgv + the Debian keyring verify the InRelease text we
  # extract; lz4 reads apt lists stored lz4-compressed (also bench-index.sh);
  # builder/tests/resolve compares our closures with `apt-get -s install` on
  # bookworm's real indexes (fetched once by a private `apt-get update`),
  # builder/tests/lock reads locked .debs back with dpkg-deb
  dpkg apt gpgv debian-archive-keyring lz4 xz-utils
  # builder tests/boot: GNU cpio writes/extracts archives compared with ours,
  # lsinitramfs (initramfs-tools-core) lists them, zstd/gzip decompress them;
  # kmod's modinfo/depmod/modprobe read real modules and our indexes; gcc +
  # libc6-dev build static, static-pie and dynamic programs for the ELF
  # checks; sbsigntool + openssl sign the UKI and check the signed digest.
  # (qemu, ovmf, swtpm above also boot the UKI; systemd-boot-efi and the
  # kernel are fetched with apt-get download, not installed.)
  cpio initramfs-tools-core zstd gzip kmod gcc libc6-dev sbsigntool openssl
  # tests/agent_boot.rs: GNU cpio lists the agent's initramfs, binutils'
  # strip drops the dev build's debug info, qemu boots it (all listed above);
  # tests/agent_net_boot.rs adds swtpm as the guest's TPM and mksquashfs
  # (squashfs-tools, below) for its image; pxe's agent switch_root test
  # loop-mounts a mksquashfs image and chroots into its busybox
  # builder tests/boot/nvidia_real.rs: the NVIDIA 535 open modules are built
  # with the host's gcc 12 + make + binutils (strip) against the cloud
  # kernel's headers; linux-kbuild's objtool/modpost need libelf1; patch
  # applies the spec's driver patches (headers and source are apt-get
  # downloaded, not installed)
  make libelf1 patch
  # builder/tests/rootfs: mmdebstrap is the reference our install is
  # compared with (and scripts/bench-build.sh races); faketime gives the
  # reproducibility test's second build another wall clock
  mmdebstrap faketime
  # builder/tests/rootfs and builder/tests/squashfs: getcap/getfattr (and
  # setcap/setfattr) check that file capabilities and extended attributes
  # survive into the images; unsquashfs (-d, -lln, -stat) reads our images,
  # mksquashfs writes the reference image and is mmdebstrap's counterpart in
  # scripts/bench-build.sh, with dpkg-scanpackages (the local repository
  # mmdebstrap reads)
  libcap2-bin attr squashfs-tools dpkg-dev
  # builder/tests/mirror, tests/mirror_*.rs: gpg makes a throwaway OpenPGP
  # key and signs test repositories (InRelease, Release.gpg) that the
  # mirror sync verifies with gpgv; apt-config is read by --from-host-apt
  gnupg
  # pxe/tests/tftp: real TFTP clients (curl tftp:// with --tftp-blksize,
  # atftp with blksize/tsize/windowsize options, tftp-hpa plain and netascii)
  curl atftp tftp-hpa
  # tests/serve_boot.rs: the test initramfs is made with the real cpio
  # (newc) around busybox-static, the test UKI with objcopy (binutils)
  # around systemd-stub; the kernel, systemd-boot-efi and ipxe packages
  # are fetched with apt-get download and unpacked with dpkg-deb
  cpio binutils
  # builder/tests/erofs: fsck.erofs (--extract) and dump.erofs read our EROFS
  # images; scripts/bench-fsimage.sh times mkfs.erofs beside our writer
  erofs-utils
  # builder/tests/release: the SPDX license and exception lists (JSON files
  # from Debian's node packages; no node runtime) check the SBOM's license
  # ids; openssl verifies the provenance envelope's Ed25519 signature over a
  # DSSE PAE computed by python3
  node-spdx-license-ids node-spdx-exceptions openssl python3
  # pxe agent::gpu tests: lspci (-mm -n -D) lists this machine's PCI
  # functions, compared with what the sysfs walker reads from /sys
  pciutils
  # tests/lab_storm.rs and `ironrack lab storm`: packet loss on the storm's
  # link by an nftables rule when the kernel has no netem qdisc (tc is in
  # iproute2); scripts/bench-storm.sh races dnsmasq's TFTP server with the
  # same simulated clients (dnsmasq-base: the binary, no host service)
  nftables dnsmasq-base
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Tests also fetch real .debs with `apt-get download`: the indexes must exist.
need_update=0
compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || need_update=1
if [ ${#missing[@]} -gt 0 ] || [ $need_update -eq 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
