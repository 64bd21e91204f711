#!/usr/bin/env bash
# Fuzz smoke run: builds the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) and runs each one for
# a few seconds on its seed corpus (fuzz/seeds.sh, from real files), failing on any crash, leak
# of a panic, timeout or out-of-memory. Long runs: `cd fuzz && cargo fuzz run <target>`.
#
# The only toolchain here is stable; cargo-fuzz passes `-Z` flags to cargo and rustc, which
# RUSTC_BOOTSTRAP=1 lets through. `-s none`: the targets are safe Rust over safe crates, so
# AddressSanitizer would mostly cost time; libFuzzer's coverage instrumentation, debug
# assertions and panics-as-crashes still apply. cargo-fuzz and the build are cached under
# ~/.cache.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-5}"
tools="$HOME/.cache/facelens-fuzz-tools"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    cargo install --locked --root "$tools" cargo-fuzz --version 0.13.2
fi
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$HOME/.cache/facelens-fuzz-target"
bash fuzz/seeds.sh >/dev/null
cd fuzz
cargo fuzz build -s none
for target in $(cargo fuzz list); do
    echo "fuzz smoke: $target for ${seconds} s"
    cargo fuzz run -s none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 2>&1 \
        | grep -E '^(stat::number_of_executed_units|==|INFO: .*corpus|.*(panicked|deadly signal|ERROR))' || true
    # cargo fuzz exits non-zero on a crash; `|| true` above only covers grep, so check artefacts.
    if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-* >/dev/null 2>&1; then
        echo "fuzz smoke: $target found a failing input:" artifacts/"$target"/* >&2
        exit 1
    fi
done
