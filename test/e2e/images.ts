// The images the end-to-end suites run, under their upstream names: capsa's
// mirror settings (hack/k8s/up.sh) send registry.k8s.io to the loopback
// registry hack/k8s/images.sh fills offline.
export const BUSYBOX = 'registry.k8s.io/e2e-test-images/busybox:1.37.0-2';
export const AGNHOST = 'registry.k8s.io/e2e-test-images/agnhost:2.66.1';
export const NGINX = 'registry.k8s.io/e2e-test-images/nginx:1.27.0-2';
