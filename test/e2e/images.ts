// The images the end-to-end suites run, under their upstream names: capsa's
// mirror settings (hack/k8s/up.sh) send registry.k8s.io to the loopback
// registry hack/k8s/images.sh fills offline. CAPSA_E2E_<NAME> overrides one.
const image = (name: string, ref: string): string => process.env[`CAPSA_E2E_${name}`] ?? ref;

export const BUSYBOX = image('BUSYBOX', 'registry.k8s.io/e2e-test-images/busybox:1.37.0-2');
export const AGNHOST = image('AGNHOST', 'registry.k8s.io/e2e-test-images/agnhost:2.66.1');
export const NGINX = image('NGINX', 'registry.k8s.io/e2e-test-images/nginx:1.27.0-2');
