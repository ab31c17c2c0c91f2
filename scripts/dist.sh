#!/usr/bin/env bash
# Builds the deployable mcp-sidecar: the `production` profile (the one scripts/bench.sh
# measures), `cargo build --locked`, then the debug info split off the way Debian packages do it:
#
#   $DIST_DIR/mcp-sidecar        stripped (no debug info, no symbol table): what is shipped
#   $DIST_DIR/mcp-sidecar.debug  its debug info and symbols (zlib-compressed DWARF), kept apart
#
# The stripped binary names its debug file in a `.gnu_debuglink` section and both carry the same
# GNU build ID, so gdb, perf and eu-stack find the symbols when the .debug file sits beside the
# binary, in a `.debug/` folder there, or under /usr/lib/debug/.build-id/. Sizes: BENCHMARKS.md,
# "The deployable binary". deploy/Dockerfile runs this script.
#
# Environment (all optional):
#   DIST_DIR=target/dist  where the two files go
#   PROFILE=production    cargo profile (`dev` for a quick check of the split itself)
#   SKIP_BUILD=1          split the binary already in target/$PROFILE
#   OBJCOPY=objcopy       the objcopy to use (binutils)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

case "${1:-}" in
  -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
  "") ;;
  *) echo "dist.sh: unexpected argument '$1' (configured by environment variables; --help)" >&2; exit 2 ;;
esac

PROFILE="${PROFILE:-production}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIST_DIR="${DIST_DIR:-$TARGET_DIR/dist}"
OBJCOPY="${OBJCOPY:-objcopy}"
# cargo's `dev` profile builds into target/debug; every other profile into its own name.
profile_dir="$PROFILE"
[ "$PROFILE" = dev ] && profile_dir=debug

if ! command -v "$OBJCOPY" >/dev/null 2>&1; then
  echo "dist.sh: $OBJCOPY not found (Debian: apt-get install binutils)" >&2
  exit 1
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --locked --profile "$PROFILE" -p mcp-sidecar --bin mcp-sidecar
fi
built="$TARGET_DIR/$profile_dir/mcp-sidecar"
if [ ! -f "$built" ]; then
  echo "dist.sh: $built does not exist (build it, or drop SKIP_BUILD)" >&2
  exit 1
fi

mkdir -p "$DIST_DIR"
# Both files are made under their final names in a scratch folder (the debuglink records the
# debug file's name and CRC), then moved into place: a failed run leaves the last pair intact.
scratch="$(mktemp -d "$DIST_DIR/.dist.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
"$OBJCOPY" --only-keep-debug --compress-debug-sections=zlib "$built" "$scratch/mcp-sidecar.debug"
(cd "$scratch" && "$OBJCOPY" --strip-all --add-gnu-debuglink=mcp-sidecar.debug "$built" mcp-sidecar)
chmod 0755 "$scratch/mcp-sidecar"
chmod 0644 "$scratch/mcp-sidecar.debug"
mv -f "$scratch/mcp-sidecar.debug" "$DIST_DIR/mcp-sidecar.debug"
mv -f "$scratch/mcp-sidecar" "$DIST_DIR/mcp-sidecar"
size() { stat -c %s "$1"; }
echo "dist.sh: $DIST_DIR/mcp-sidecar: $(size "$DIST_DIR/mcp-sidecar") bytes (built: $(size "$built")); debug info: $DIST_DIR/mcp-sidecar.debug, $(size "$DIST_DIR/mcp-sidecar.debug") bytes"
