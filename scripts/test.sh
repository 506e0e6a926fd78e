#!/usr/bin/env bash
# The whole test suite: the README's second command, and what CI runs.
# fmt, clippy -D warnings, then every test (unit, integration, and the
# root/qemu suites, which need the packages scripts/deps.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
