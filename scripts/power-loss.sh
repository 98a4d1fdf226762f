#!/usr/bin/env bash
# The long run of the crash simulator (crates/log/tests/power_loss.rs):
# 100,000 seeds by default (SEEDS=n to change), each a power loss at a
# random point of a traced workload, checked by the oracle; 10,000 seeds
# took 138 s on a 2-core machine (so ~25 minutes for 100,000). STELE_SIM_KEEP=1
# keeps the directory of a failing outcome for `stele verify` or a debugger.
# Built as `cargo test --workspace` builds it (the same features), so the
# cache of a test run is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/stele-target}"
STELE_SIM_SEEDS="${SEEDS:-100000}" cargo test --workspace --locked --test power_loss \
  -- --nocapture power_loss_at_any_point
