#!/usr/bin/env bash
# Runs every test, including the conformance suite against the real services (started here
# when missing), with every backend compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: cargo-nextest not found; installing it"
  cargo install cargo-nextest --locked
fi

cargo nextest run --workspace --features switchyard/full --no-fail-fast "$@"
