#!/usr/bin/env bash
# Reformats C++/CUDA sources in place with .clang-format (clang-format from PATH).
# Usage: scripts/format.sh [FILE ...]   (default: every tracked *.cpp *.hpp *.h *.cu *.cuh)
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
((${#files[@]})) || { echo "no files to format"; exit 0; }
echo "==> $("$CLANG_FORMAT" --version): formatting ${#files[@]} file(s)"
"$CLANG_FORMAT" -i --style=file "${files[@]}"
