// Request values that are well-formed but name something this host does not
// have: CPUs that are not online, memory nodes without memory, huge page
// sizes the kernel does not offer. Without these checks the cgroup write
// fails much later (ERANGE/EINVAL on cpuset.cpus) with an error naming a
// cgroup file instead of the request's field; with them the answer is an
// InvalidArgument naming the CRI field. Read from sysfs on each request
// (a few small files; CPUs can come and go).
import { readdirSync, readFileSync } from 'fs';
import { InvalidArgumentError } from '../errors';
import type { LinuxContainerResources } from '../gen/runtime/v1/api';

export interface HostFacts {
  /** Online CPUs; undefined when unknown (no check). */
  cpus?: ReadonlySet<number>;
  /** Memory nodes with memory; undefined when unknown. */
  mems?: ReadonlySet<number>;
  /** Huge page sizes as CRI spells them ("2MB", "1GB"); undefined when unknown. */
  hugepageSizes?: ReadonlySet<string>;
}

/** Parses a kernel list ("0-3,8"); undefined when malformed. */
export function parseList(text: string): Set<number> | undefined {
  const out = new Set<number>();
  const t = text.trim();
  if (t === '') return out;
  for (const part of t.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi > 65535) return undefined;
    for (let i = lo; i <= hi; i++) out.add(i);
  }
  return out;
}

function readList(file: string): Set<number> | undefined {
  try {
    return parseList(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** "hugepages-2048kB" → "2MB" (CRI's spelling: the largest unit that divides). */
export function hugepageName(dir: string): string | undefined {
  const m = /^hugepages-(\d+)kB$/.exec(dir);
  if (!m) return undefined;
  const kb = Number(m[1]);
  if (kb % (1024 * 1024) === 0) return `${kb / (1024 * 1024)}GB`;
  if (kb % 1024 === 0) return `${kb / 1024}MB`;
  return `${kb}KB`;
}

export function readHostFacts(): HostFacts {
  let hugepageSizes: Set<string> | undefined;
  try {
    hugepageSizes = new Set(
      readdirSync('/sys/kernel/mm/hugepages')
        .map(hugepageName)
        .filter((x): x is string => x !== undefined),
    );
  } catch {
    hugepageSizes = undefined;
  }
  return {
    cpus: readList('/sys/devices/system/cpu/online'),
    mems: readList('/sys/devices/system/node/has_memory') ?? readList('/sys/devices/system/node/online'),
    hugepageSizes,
  };
}

function checkMembers(list: string, have: ReadonlySet<number> | undefined, field: string, what: string): void {
  if (list === '' || !have || have.size === 0) return;
  const want = parseList(list);
  // Syntax is checked elsewhere (with its own message).
  if (!want) return;
  const missing = [...want].filter((x) => !have.has(x));
  if (missing.length > 0) {
    const shown = missing.slice(0, 8).join(',') + (missing.length > 8 ? ',…' : '');
    throw new InvalidArgumentError(
      field,
      `${what} ${shown} not on this host (available: ${[...have].sort((a, b) => a - b).join(',')})`,
    );
  }
}

/** Refuses cpusets and huge page sizes this host does not have, naming `${field}.<CRI field>`. */
export function checkHostResources(
  r: LinuxContainerResources | undefined,
  field: string,
  facts: HostFacts = readHostFacts(),
): void {
  if (!r) return;
  checkMembers(r.cpusetCpus, facts.cpus, `${field}.cpuset_cpus`, 'CPU(s)');
  checkMembers(r.cpusetMems, facts.mems, `${field}.cpuset_mems`, 'memory node(s)');
  if (facts.hugepageSizes) {
    r.hugepageLimits.forEach((h, i) => {
      if (!facts.hugepageSizes!.has(h.pageSize)) {
        throw new InvalidArgumentError(
          `${field}.hugepage_limits[${i}].page_size`,
          `"${h.pageSize.slice(0, 40)}" is not a huge page size of this host (${[...facts.hugepageSizes!].join(', ') || 'none'})`,
        );
      }
    });
  }
}
