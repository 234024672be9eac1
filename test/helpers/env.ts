/** Coordinates of the services `scripts/with-test-services.sh` started (`npm test` does that). */
export function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(
      `${name} is not set: integration tests need the test services; run them with \`npm test\` ` +
        '(scripts/with-test-services.sh starts PostgreSQL and S3 as local processes)',
    );
  }
  return v;
}
