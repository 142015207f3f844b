#!/usr/bin/env bash
# Sidekick's one entry point: sets up what is missing, then does the job asked for.
#   ./run.sh chat    set up, build, and chat with the bundled model on this terminal
#   ./run.sh test    set up, build, and run every test
#   ./run.sh bench   set up, build, and print the serving benchmark
#   ./run.sh bench-retrieval   the same for the retrieval benchmark
#   ./run.sh bench-learning    seconds per training step, and reply latency while training
#   ./run.sh bench-history     import rate on the shared corpus, and dataset build time
#   ./run.sh bench-soak        a simulated month of a busy server: memory, disk and latency per day
#   ./run.sh run     set up, build, and start the Discord daemon (needs DISCORD_TOKEN)
#   ./run.sh setup   only set up
set -euo pipefail
cd "$(dirname "$0")"

# Cargo's build output lives outside the clone so a fresh clone reuses a warm cache (as CI
# systems do); an empty cache still works, it just builds llama.cpp from scratch (5-10 min).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sidekick/target}"

say() { printf 'setup: %s\n' "$*" >&2; }

install_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v c++ >/dev/null || missing+=(g++)
  # bindgen needs libclang's C library; libclang-cpp alone (a fresh Debian machine) is not it.
  bash scripts/find_libclang.sh >/dev/null || missing+=(libclang-dev)
  command -v python3 >/dev/null || missing+=(python3 python3-pip)
  if [ ${#missing[@]} -eq 0 ]; then
    say "build tools present (cmake, C++ compiler, libclang, python3)"
    return
  fi
  say "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v apt-get >/dev/null; then
    say "please install: ${missing[*]} (no apt-get here)"; exit 1
  fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  bash scripts/find_libclang.sh >/dev/null || { say "libclang is still missing after installing ${missing[*]}"; exit 1; }
}

# bindgen looks in a few standard folders; pointing it at the one found makes that certain.
export_libclang_path() {
  local dir
  if [ -z "${LIBCLANG_PATH:-}" ] && dir="$(bash scripts/find_libclang.sh)"; then
    export LIBCLANG_PATH="$dir"
  fi
}

setup() {
  install_build_deps
  export_libclang_path
  python3 scripts/install_models.py >&2  # stdout is the chat's
  mkdir -p data_storage
  [ -f sidekick.toml ] || { cp sidekick.example.toml sidekick.toml; say "wrote sidekick.toml from sidekick.example.toml"; }
}

build() {
  say "building (cargo build --release; target dir $CARGO_TARGET_DIR)"
  cargo build --release --quiet --bins
}

# Formatting and lints fail the tests, so a change cannot land unformatted or with a warning.
lint() {
  say "checking formatting and lints (cargo fmt --check, cargo clippy -D warnings)"
  cargo fmt --all --check
  cargo clippy --release --quiet --workspace --all-targets -- -D warnings
}

cmd="${1:-chat}"; shift || true
case "$cmd" in
  setup) setup ;;
  chat)  setup; build; exec "$CARGO_TARGET_DIR/release/sidekick" chat "$@" ;;
  run)   setup; build; exec "$CARGO_TARGET_DIR/release/sidekick" run "$@" ;;
  # The tests also need Prometheus and systemd-analyze (Debian packages) for the dashboard and
  # unit checks.
  test)  setup; bash scripts/ci_tools.sh; lint; cargo test --release --workspace "$@" ;;
  bench) setup; cargo bench --bench serving "$@" ;;
  bench-retrieval) setup; cargo bench --bench retrieval "$@" ;;
  bench-learning) setup; cargo bench --bench learning "$@" ;;
  bench-history) setup; cargo bench --bench history "$@" ;;
  bench-soak) setup; cargo bench --bench soak "$@" ;;
  *) echo "usage: ./run.sh [chat|test|bench|bench-retrieval|bench-learning|bench-history|bench-soak|run|setup]" >&2; exit 2 ;;
esac
