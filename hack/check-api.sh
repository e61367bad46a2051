#!/usr/bin/env bash
# Checks api/runtime/v1/api.proto, our transcription of CRI v1, against the
# upstream protocol descriptor by descriptor: every message, field (name,
# number, type, label, type name, JSON name, oneof, packed, deprecated),
# enum value, service and RPC (types, streaming) must be the same, with
# nothing missing and nothing extra. Comments are not compared (ours are our
# own words).
#
#   hack/check-api.sh [CRI_API_VERSION]     default v0.37.2 (Kubernetes v1.37)
#
# Upstream comes from the Go module k8s.io/cri-api through `go mod download`
# (the module cache, outside the repository). Both files are compiled with
# protoc into descriptor sets; upstream's debug_redact field options are
# dropped first (protoc 3.21 does not know them; they change nothing on the
# wire, and our file leaves them out for that reason).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-v0.37.2}"
for t in go protoc node; do
  command -v "$t" >/dev/null || {
    echo "check-api: $t not found" >&2
    exit 1
  }
done

dir=$(cd /tmp && GOFLAGS= go mod download -json "k8s.io/cri-api@$version" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
upstream="$dir/pkg/apis/runtime/v1/api.proto"
[[ -f "$upstream" ]] || {
  echo "check-api: no $upstream (go mod download k8s.io/cri-api@$version failed?)" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/up/runtime/v1"
sed 's/ \[debug_redact = true\]//' "$upstream" >"$work/up/runtime/v1/api.proto"
protoc -I "$work/up" --descriptor_set_out="$work/upstream.pb" runtime/v1/api.proto
protoc -I "$root/api" --descriptor_set_out="$work/ours.pb" runtime/v1/api.proto

cd "$root"
node - "$work/ours.pb" "$work/upstream.pb" "$version" <<'EOF'
const fs = require('fs');
const { FileDescriptorSet } = require('ts-proto-descriptors');

// One flat map per file: "kind full.name" -> everything about it that the wire or the bindings see.
function describe(file) {
  const out = new Map([['package', file.package], ['syntax', file.syntax]]);
  const enumOf = (e, scope) =>
    out.set(`enum ${scope}.${e.name}`, e.value.map((v) => `${v.name}=${v.number}`).join(' '));
  const messageOf = (m, scope) => {
    const name = `${scope}.${m.name}`;
    out.set(`message ${name}`, m.options?.mapEntry ? 'map entry' : 'message');
    out.set(`reserved ${name}`, JSON.stringify([m.reservedRange, m.reservedName]));
    for (const f of m.field) {
      const oneof = f.oneofIndex !== undefined && m.oneofDecl.length ? m.oneofDecl[f.oneofIndex]?.name : '';
      out.set(
        `field ${name}.${f.name}`,
        `#${f.number} type=${f.type} label=${f.label} of=${f.typeName || '-'} json=${f.jsonName} oneof=${oneof}` +
          ` packed=${f.options?.packed ?? '-'} deprecated=${f.options?.deprecated ?? '-'} optional=${f.proto3Optional}`,
      );
    }
    m.nestedType.forEach((n) => messageOf(n, name));
    m.enumType.forEach((e) => enumOf(e, name));
  };
  file.messageType.forEach((m) => messageOf(m, file.package));
  file.enumType.forEach((e) => enumOf(e, file.package));
  for (const s of file.service) {
    out.set(`service ${s.name}`, s.method.map((r) => r.name).join(' '));
    for (const r of s.method) {
      out.set(
        `rpc ${s.name}.${r.name}`,
        `${r.inputType} -> ${r.outputType} client-streaming=${!!r.clientStreaming} server-streaming=${!!r.serverStreaming}`,
      );
    }
  }
  return out;
}

const [oursFile, upFile, version] = process.argv.slice(2);
const load = (p) => FileDescriptorSet.decode(fs.readFileSync(p)).file[0];
const ours = describe(load(oursFile));
const up = describe(load(upFile));
const problems = [];
for (const [k, v] of up) {
  if (!ours.has(k)) problems.push(`missing: ${k} (${v})`);
  else if (ours.get(k) !== v) problems.push(`differs: ${k}\n    ours:     ${ours.get(k)}\n    upstream: ${v}`);
}
for (const [k, v] of ours) if (!up.has(k)) problems.push(`extra: ${k} (${v})`);
const count = (m, kind) => [...m.keys()].filter((k) => k.startsWith(kind + ' ')).length;
const what = ['message', 'field', 'enum', 'rpc'].map((k) => `${count(up, k)} ${k}s`).join(', ');
if (problems.length) {
  console.error(`check-api: api/runtime/v1/api.proto differs from k8s.io/cri-api ${version}:`);
  for (const p of problems) console.error('  ' + p);
  process.exit(1);
}
console.log(`check-api: api/runtime/v1/api.proto matches k8s.io/cri-api ${version} (${what})`);
EOF
