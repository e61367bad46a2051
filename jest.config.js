// Tests run on the compiled output (dist/), the same code the daemon runs.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testTimeout: 60000,
  // Integration tests share host resources (cgroups, mounts, registries).
  maxWorkers: 1,
};
