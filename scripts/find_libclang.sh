#!/usr/bin/env bash
# Prints the folder holding libclang's C library, the one bindgen (clang-sys) loads to build
# llama.cpp's bindings, or nothing and exit 1 when there is none.
#
# What counts is what clang-sys opens: libclang.so, libclang.so.N, libclang-N.so and
# libclang-N.so.M. libclang-cpp.so.N is the C++ library (package libclang-cpp14); it does not
# export the C API, and a fresh Debian machine can have it without libclang itself.
#
#   find_libclang.sh [--root DIR]   DIR is prepended to every searched folder (fixture tests)
set -uo pipefail

root=""
if [ "${1:-}" = "--root" ]; then root="${2:?--root needs a folder}"; fi

is_libclang_c() {
  case "$1" in
    libclang-cpp*) return 1 ;;
    libclang.so | libclang.so.[0-9]*) return 0 ;;
    libclang-[0-9]*.so | libclang-[0-9]*.so.[0-9]*) return 0 ;;
    *) return 1 ;;
  esac
}

candidates=()
# An explicit LIBCLANG_PATH wins, as it does for clang-sys (only outside fixture tests).
[ -z "$root" ] && [ -n "${LIBCLANG_PATH:-}" ] && candidates+=("$LIBCLANG_PATH")
if [ -z "$root" ] && command -v llvm-config >/dev/null 2>&1; then
  candidates+=("$(llvm-config --libdir 2>/dev/null)")
fi
shopt -s nullglob
# Newest LLVM first, so a machine with several picks the one a build would want.
for dir in $(printf '%s\n' "$root"/usr/lib/llvm-*/lib | sort -V -r) \
  "$root"/usr/lib/*-linux-gnu "$root"/usr/lib64 "$root"/usr/lib "$root"/usr/local/lib; do
  candidates+=("$dir")
done

for dir in "${candidates[@]}"; do
  [ -d "$dir" ] || continue
  for file in "$dir"/libclang*; do
    if is_libclang_c "$(basename "$file")" && [ -e "$file" ]; then
      printf '%s\n' "$dir"
      exit 0
    fi
  done
done
exit 1
