// The end-to-end suites (kubelet on capsa through kubectl, test/e2e): one
// cluster for the whole run, brought up and torn down around it.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test/e2e'],
  testMatch: ['**/*.test.js'],
  testTimeout: 300000,
  maxWorkers: 1,
  globalSetup: '<rootDir>/dist/test/e2e/global-setup.js',
  globalTeardown: '<rootDir>/dist/test/e2e/global-teardown.js',
};
