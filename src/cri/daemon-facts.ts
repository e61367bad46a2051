// What the spec builder needs to know about this daemon, read once at start:
// its oom_score_adj, RLIMIT_NOFILE and capabilities, the node's hostname, the
// cgroup version.
import { promises as fs } from 'fs';
import { ALL_CAPABILITIES, readCapLastCap, readDaemonNofile, readDaemonOomScoreAdj } from './container-spec';
import { DaemonFacts, nodeHostname } from './container-mapping';

/** CAP_SYS_RESOURCE */
const CAP_SYS_RESOURCE = 24n;

/** What the spec builder needs to know about this daemon. */
export async function readDaemonFacts(cgroupVersion: 1 | 2): Promise<DaemonFacts> {
  const status = await fs.readFile('/proc/self/status', 'utf8');
  const capEff = /^CapEff:\s+([0-9a-f]+)$/m.exec(status)?.[1];
  const capBnd = /^CapBnd:\s+([0-9a-f]+)$/m.exec(status)?.[1];
  const hasSysResource = capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_SYS_RESOURCE) & 1n) === 1n;
  const bnd = capBnd === undefined ? undefined : BigInt(`0x${capBnd}`);
  const boundingCaps =
    bnd === undefined ? undefined : new Set(ALL_CAPABILITIES.filter((_c, i) => ((bnd >> BigInt(i)) & 1n) === 1n));
  return {
    oomScoreAdj: await readDaemonOomScoreAdj(),
    restrictOomScoreAdj: !hasSysResource,
    nofile: await readDaemonNofile(),
    capLastCap: await readCapLastCap().catch(() => 40),
    nodeHostname: nodeHostname(),
    cgroupVersion,
    boundingCaps,
  };
}
