#!/usr/bin/env bash
# Checks formatting without changing anything (clang-format --dry-run -Werror); exit 1 when a file
# would change. Usage: scripts/check-format.sh [FILE ...]   (default: every tracked C++/CUDA source)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
command -v "$CLANG_FORMAT" >/dev/null 2>&1 ||
  { echo "ERROR: $CLANG_FORMAT not found on PATH (Debian: apt-get install clang-format)" >&2; exit 1; }
if (($# == 0)); then
  mapfile -t files < <(git ls-files -- '*.cpp' '*.hpp' '*.h' '*.cu' '*.cuh')
else
  files=("$@")
fi
((${#files[@]})) || { echo "no files to check"; exit 0; }
bad=()
for f in "${files[@]}"; do
  "$CLANG_FORMAT" --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "FAIL: ${#bad[@]} of ${#files[@]} file(s) need formatting (run scripts/format.sh):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "PASS: ${#files[@]} file(s) formatted"
