// Jest global setup of the end-to-end suites: the one-node cluster of
// hack/k8s/up.sh (idempotent: a cluster already up is reused).
import { k8sScript } from '../helpers/k8s';

export default async function setup(): Promise<void> {
  process.stderr.write('\ne2e: bringing up the cluster (hack/k8s/up.sh)\n');
  process.stderr.write(await k8sScript('up.sh', [], 900_000));
}
