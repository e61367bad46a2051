// Tests run on the compiled output (dist/), the same code the daemon runs.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  // the kubelet suites have their own config (jest.e2e.config.js, hack/k8s/test.sh)
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/dist/test/e2e/'],
  testMatch: ['**/*.test.js'],
  testTimeout: 60000,
  // Integration tests share host resources (cgroups, mounts, registries).
  maxWorkers: 1,
};
