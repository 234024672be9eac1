// Build step after tsc: dist/src/cli.js becomes one file holding the CLI and its dependencies.
// Why: loading ~1,000 modules one by one (the AWS SDK alone is hundreds) cost ~0.37 s of every
// start; the bundle loads in ~0.18 s. Every command starts sooner, and `ship --drain` jobs and
// cron'd `verify` runs pay that start each time. The other files in dist/src stay as tsc wrote them
// (the benchmark imports them); the tests run this bundle, as users do.
import { build } from 'esbuild';

// The worker threads of `verify` and `query` load scripts of their own, bundled the same way beside the CLI.
await build({
  entryPoints: { cli: 'src/cli.ts', 'verify-worker': 'src/verify/verify-worker.ts', 'query-worker': 'src/query/query-worker.ts' },
  outdir: 'dist/src',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  // pg's optional native binding is never used (pure JavaScript client). The console's web server
  // and PDF writer, and Google's auth library (ingest --log-source cloud-logging), are loaded from
  // node_modules when used (dynamic imports), so no other
  // command pays for them at start; pdfkit also reads its font metrics from its own directory.
  external: ['pg-native', 'fastify', '@fastify/*', 'pdfkit', 'openid-client', 'google-auth-library'],
  // CommonJS dependencies call require() for Node's own modules; ESM output needs one to exist.
  banner: { js: "import { createRequire as __pgAuditCreateRequire } from 'node:module';\nconst require = __pgAuditCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
