#!/usr/bin/env bash
# Checks that only a release build can make, kept out of `cargo test`
# (which builds debug binaries) because a release build of the whole
# dependency tree takes many minutes on a small machine:
#
# - the release `stele` refuses to run with the testing aids STELE_NOW or
#   STELE_RETENTION_GRACE set (exit 2, nothing changed), which debug
#   builds honour (crates/cli/tests/testing_aids.rs checks whichever build
#   runs it; crates/cli/src/local.rs unit-tests the decision for both).
#
# Usage: scripts/release-checks.sh   (CARGO_TARGET_DIR as for .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/stele-target}"
cargo test --release --locked -p stele-cli --test testing_aids
