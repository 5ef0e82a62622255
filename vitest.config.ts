import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Tests beside the code that need a real PostgreSQL (they start one of their
 * own or use the run's): they belong to the e2e project, with test/.
 */
const SRC_TESTS_NEEDING_POSTGRES = [
  'src/demo/embedded-postgres.test.ts',
  'src/demo/seed.test.ts',
  'src/protocol/auth/scram-client.test.ts',
  'src/gateway/write-roles.test.ts',
];

/**
 * Two projects (https://vitest.dev/guide/projects): `unit` runs without any
 * PostgreSQL (`npm run test:unit`); `e2e` gets the run's embedded PostgreSQL
 * from the global setup. `npm test` runs both.
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...SRC_TESTS_NEEDING_POSTGRES],
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts', ...SRC_TESTS_NEEDING_POSTGRES],
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
});
