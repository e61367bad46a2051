// Jest global teardown of the end-to-end suites: hack/k8s/down.sh, then the
// check that the cluster left nothing of capsa's or kubelet's behind.
import { existsSync, promises as fs } from 'fs';
import { listCapsaLeaks } from '../helpers/leaks';
import { CAPSA_SOCKET, CGROUP_ROOT, K8S_BIN, K8S_DIR, K8S_RUN, k8sScript } from '../helpers/k8s';
import * as path from 'path';

export default async function teardown(): Promise<void> {
  if (process.env.CAPSA_E2E_KEEP === '1') {
    process.stderr.write('e2e: CAPSA_E2E_KEEP=1, the cluster stays up\n');
    return;
  }
  process.stderr.write(await k8sScript('down.sh', [], 300_000));
  // the cluster's pods live under kubelet's kubepods cgroup; other capsa
  // daemons on this machine (tests, critest) are not this cluster's business
  const leaks = await listCapsaLeaks([K8S_DIR, K8S_RUN, path.dirname(CAPSA_SOCKET)], {
    cgroupParents: ['kubepods', 'kubepods.slice'].map((q) => path.join(CGROUP_ROOT, q)),
  });
  for (const h of await fs.readdir('/sys/fs/cgroup')) {
    for (const q of ['kubepods', 'kubepods.slice']) {
      const d = path.join('/sys/fs/cgroup', h, CGROUP_ROOT, q);
      if (existsSync(d)) leaks.push(`cgroup: ${d}`);
    }
  }
  const procs = await fs.readdir('/proc');
  for (const p of procs) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    const ours = cmd.includes(K8S_DIR) || cmd.includes(K8S_RUN);
    if (ours && (cmd.startsWith(K8S_BIN + '/') || cmd.includes('/bin/capsa\0serve'))) {
      leaks.push(`process: ${p} ${cmd.replace(/\0/g, ' ')}`);
    }
  }
  if (leaks.length) throw new Error(`the cluster left ${leaks.length} object(s) behind:\n  ${leaks.join('\n  ')}`);
}
