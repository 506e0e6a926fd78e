#!/usr/bin/env bash
# The README's first command: ironrack's main job on a built-in default.
#
# It runs the whole chain on one machine: it builds ironrack, makes
# a demo signing hierarchy (two offline root keys, threshold 2, delegating to
# a CI signing key scoped to the demo image), signs a manifest-shaped
# artifact set and verifies it through the trust chain, with minisign as an
# independent verifier; then it syncs a local mirror with the closure of
# images/gpu-node.toml from the host's apt (snapshots signed by a key the
# trust root scopes to `mirror:site`), locks the spec against it and builds
# the image (out/demo/out/gpu-node/1): the NVIDIA 535 open modules compiled
# in a sandbox of the lock's build set, the version chain checked, vmlinuz,
# initrd.img (this ironrack as the agent) and node.efi written, all signed;
# then verifies it, and boots it in the virtual rack: a UEFI and a BIOS
# qemu node, each with its own TPM, network-booted by `ironrack serve`,
# attested and running the image. Re-running reuses the keys, the mirror
# and the build cache, and compares the image's digests with the previous run's.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${IRONRACK_DEMO_DIR:-$PWD/out/demo}
bash scripts/deps.sh
cargo build --release --locked --quiet
repo=$PWD
ironrack=$repo/target/release/ironrack
mkdir -p "$work/keys"
cd "$work"

step() { printf '\n== %s\n' "$*"; }

step "keys: two offline roots and a CI signing key"
for k in root-a root-b ci mirror; do
  [ -f "keys/$k.key" ] || "$ironrack" keys generate "$k" --dir keys
done

step "trust.json: roots (threshold 2) delegate image:gpu-node on channel:stable to ci"
[ -f trust.json ] ||
  "$ironrack" keys trust init --root keys/root-a.key --root keys/root-b.key \
    --threshold 2 --expires 365d -o trust.json
# Each signer once (a demo directory from an older ironrack may lack one).
signer() {
  local name=$1; shift
  grep -Eq "\"name\": ?\"$name\"" trust.json ||
    "$ironrack" keys trust add-signer trust.json --pub "keys/$name.pub" --name "$name" \
      "$@" --expires 90d --root keys/root-a.key --root keys/root-b.key
}
signer ci --scope image:gpu-node --scope channel:stable
signer mirror --scope mirror:site
"$ironrack" keys trust show trust.json

step "sign a file and verify it with ironrack and with minisign"
printf 'ironrack demo %s\n' "$(date -u +%F)" > hello.txt
rm -f hello.txt.minisig
"$ironrack" sign hello.txt --key keys/ci.key --trusted-comment "demo artifact"
"$ironrack" verify-sig hello.txt --pub keys/ci.pub
minisign -Vm hello.txt -p keys/ci.pub

step "a changed file is refused (exit code 3: verification failed)"
cp hello.txt tampered.txt && cp hello.txt.minisig tampered.txt.minisig
echo "one more line" >> tampered.txt
set +e
"$ironrack" verify-sig tampered.txt --pub keys/ci.pub
rc=$?
set -e
[ $rc -eq 3 ] || { echo "expected exit code 3, got $rc" >&2; exit 1; }
echo "refused, as it should be"

step "mirror: the closure of images/gpu-node.toml from the host's apt (+ non-free)"
# The spec is copied next to the mirror so its `mirror.path = "../mirror"`
# finds the demo's mirror; an operator keeps both in the site's repository.
mkdir -p images
cp "$repo/images/gpu-node.toml" images/gpu-node.toml
rm -rf images/gpu-node && cp -a "$repo/images/gpu-node" images/gpu-node
[ -d mirror ] || "$ironrack" mirror init mirror --name site
pins=(--pin keys/root-a.pub --pin keys/root-b.pub)
# Synced once; again only when the spec needs what the snapshot lacks.
if [ ! -f mirror/refs/bookworm-site ] || ! ls mirror/pool/main/i/ipxe/ipxe_*_all.deb >/dev/null 2>&1 ||
   ! "$ironrack" lock images/gpu-node.toml --trust trust.json "${pins[@]}" >/dev/null 2>&1; then
  "$ironrack" mirror sync mirror --from-host-apt \
    --add-components non-free,non-free-firmware,contrib \
    --for images/gpu-node.toml --package ipxe --ref bookworm-site --key keys/mirror.key
fi
"$ironrack" mirror verify mirror bookworm-site --trust trust.json "${pins[@]}"

step "lock: resolve the image and build package sets against the verified snapshot"
"$ironrack" lock images/gpu-node.toml --trust trust.json "${pins[@]}"
"$ironrack" lock images/gpu-node.toml --check --trust trust.json "${pins[@]}"

step "build: the image from the lock, in a sandbox, bit-for-bit reproducible, signed by ci"
# Published versions are immutable: an image an older ironrack published
# here (other inputs, same version) is the demo's own, and is replaced.
if ! "$ironrack" build images/gpu-node.toml --trust trust.json "${pins[@]}" --key keys/ci.key; then
  [ -d out/gpu-node/1 ] || exit 1
  echo "replacing the demo's earlier out/gpu-node/1 (other inputs) and building again"
  rm -rf out/gpu-node/1
  "$ironrack" build images/gpu-node.toml --trust trust.json "${pins[@]}" --key keys/ci.key
fi

step "verify: what an auditor runs, offline (signature chain, digests, SBOM, provenance)"
"$ironrack" verify out/gpu-node/1 --trust trust.json "${pins[@]}"
minisign -Vm out/gpu-node/1/manifest.json -p keys/ci.pub

step "reproducible: this build's digests against the previous demo run's"
digests() { (cd out/gpu-node/1 && sha256sum manifest.json rootfs.squashfs node.efi initrd.img vmlinuz); }
if [ -f previous-build.sha256 ]; then
  if digests | diff -u previous-build.sha256 -; then
    echo "identical to the previous run's image ($(wc -l < previous-build.sha256) files)"
  else
    echo "differs from the previous run's image: other inputs (the spec, the lock, or this"
    echo "ironrack, whose agent is baked into the image)"
  fi
fi
digests | tee previous-build.sha256.new
mv previous-build.sha256.new previous-build.sha256

step "lab: boot a UEFI and a BIOS node from the image, attest them, run it"
# Each node's TPM comes from the lab's own vendor CA, which the lab's
# server trusts; the UEFI node is held to the whole measured chain (iPXE,
# UKI, kernel, command line, PCR 11), the BIOS node to what SeaBIOS can
# measure (boot-chain = "bios"). A lab left by an interrupted run goes first.
"$ironrack" lab down --dir lab >/dev/null 2>&1 || true
"$ironrack" lab up --image out/gpu-node/1 --trust trust.json --mirror mirror \
  --nodes 2 --firmware mixed --memory 1536 --dir lab
# The image's systemd comes up under the host name the server gave.
for node in node-1 node-2; do
  for _ in $(seq 300); do
    "$ironrack" lab logs "$node" --dir lab 2>/dev/null | grep -aq "$node login:" && break
    sleep 1
  done
  "$ironrack" lab logs "$node" --dir lab | grep -a -m1 "$node login:" ||
    echo "$node: no login prompt yet (ironrack lab logs $node --dir $work/lab)"
done
"$ironrack" nodes show node-1 --site lab/site.toml
if [ -n "${IRONRACK_DEMO_KEEP_LAB:-}" ]; then
  echo "the lab stays up: ironrack lab status|logs NODE|down --dir $work/lab"
else
  "$ironrack" lab down --dir lab
fi

printf '\nDemo done. Files are in %s\n' "$work"
