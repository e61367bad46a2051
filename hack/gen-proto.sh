#!/usr/bin/env bash
# Generate TypeScript bindings for the CRI protocol (api/runtime/v1/api.proto)
# into src/gen/ with ts-proto. src/gen/ is not committed; `npm run gen` (and
# so `npm run build`) runs this script.
#
# ts-proto options:
#   outputServices=grpc-js  RuntimeServiceService / RuntimeServiceClient etc.
#                           for @grpc/grpc-js
#   env=node                Buffer for bytes fields
#   esModuleInterop=true    matches our tsconfig
#   useOptionals=none       plain interfaces; every field present, messages
#                           typed `T | undefined`
#   forceLong=bigint        int64/uint64 as JS bigint: exact. CRI timestamps
#                           are Unix nanoseconds (~1.8e18), past 2^53, so
#                           plain numbers would round on encode and throw on
#                           decode (test/unit/api-wire.test.ts pins this).
#   (defaults kept: X.create()/X.fromPartial() fill unset fields with proto3
#   defaults, which beats spelling out every field; X.toJSON() gives the
#   proto3 JSON form, useful for verbose `info` maps)
#   unrecognizedEnum=false  no UNRECOGNIZED = -1 member in our enums; unknown
#                           values still decode as their number
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

plugin=./node_modules/.bin/protoc-gen-ts_proto
if [[ ! -x "$plugin" ]]; then
  echo "gen-proto: $plugin not found; run npm install first" >&2
  exit 1
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "gen-proto: protoc not found (Debian: apt-get install protobuf-compiler)" >&2
  exit 1
fi

out=src/gen
rm -rf "$out"
mkdir -p "$out"

opts=(
  outputServices=grpc-js
  env=node
  esModuleInterop=true
  useOptionals=none
  forceLong=bigint
  unrecognizedEnum=false
)
IFS=, joined="${opts[*]}"

protoc \
  --plugin=protoc-gen-ts_proto="$plugin" \
  --ts_proto_out="$out" \
  --ts_proto_opt="$joined" \
  -I api \
  api/runtime/v1/api.proto

echo "gen-proto: wrote $(find "$out" -name '*.ts' | wc -l) file(s) under $out"
