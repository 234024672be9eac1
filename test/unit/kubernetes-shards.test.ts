import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { runCli } from '../helpers/cli.js';

/*
 * No Kubernetes cluster runs here, so retention/kubernetes/verify-sharded.yaml is checked as far as a
 * real YAML parser and the real CLI take it: its pods' command lines and environment, with the
 * variables expanded as the kubelet expands $(VAR) references and the completion index each pod
 * gets, run against a committed archive; the merge pod's command then gives the verdict a single
 * `verify` gives. What is not checked: the Job controller itself, the volume, the schedules.
 */
type Container = { args: string[]; env?: { name: string; value?: string; valueFrom?: unknown }[] };
type CronJob = {
  metadata: { name: string };
  spec: { jobTemplate: { spec: { completionMode?: string; completions?: number; parallelism?: number; template: { spec: { containers: Container[] } } } } };
};
const docs = parseAllDocuments(readFileSync(path.join(PACKAGE_ROOT, 'retention/kubernetes/verify-sharded.yaml'), 'utf8'));
const jobs = docs.map((d) => d.toJS() as CronJob);
const [shards, merge] = [jobs.find((j) => j.metadata.name === 'pg-audit-verify-shards')!, jobs.find((j) => j.metadata.name === 'pg-audit-verify-merge')!];

/** A pod's environment: literal values, with $(NAME) of variables defined before expanded (the kubelet's rule). */
function podEnv(c: Container, index: number, replace: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const raw = e.value ?? (e.valueFrom ? String(index) : ''); // the one valueFrom is the completion index annotation
    env[e.name] = raw.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => env[n] ?? m);
  }
  for (const [k, v] of Object.entries(replace)) if (k in env) env[k] = v;
  return env;
}

describe('retention/kubernetes/verify-sharded.yaml', () => {
  it('parses, and is an Indexed Job whose completions match the /N its pods are given and the reports its merge reads', () => {
    for (const d of docs) expect(d.errors).toEqual([]);
    const spec = shards.spec.jobTemplate.spec;
    expect(spec.completionMode).toBe('Indexed');
    const n = spec.completions!;
    const c = spec.template.spec.containers[0]!;
    expect(podEnv(c, 3, {}).AUDIT_VERIFY_SHARD).toBe(`3/${n}`);
    const mergeArgs = merge.spec.jobTemplate.spec.template.spec.containers[0]!.args;
    expect(mergeArgs.filter((a) => a.endsWith('.json'))).toEqual([...Array(n).keys()].map((i) => `/reports/shard-${i}.json`));
  });

  it("its pods' command lines, run on an archive with a tamper finding, reach the verdict of one verify run", async () => {
    const corpus = path.join(PACKAGE_ROOT, 'test/conformance/corpus');
    const archive = `file://${path.join(corpus, 'tamper-delete', 'archive')}`;
    const key = path.join(corpus, 'keys', 'A.pem');
    const reports = await mkdtemp(path.join(tmpdir(), 'reports-'));
    const spec = shards.spec.jobTemplate.spec;
    const c = spec.template.spec.containers[0]!;
    for (let i = 0; i < spec.completions!; i++) {
      const env = podEnv(c, i, { AUDIT_ARCHIVE: archive, AUDIT_VERIFY_KEY: key });
      env.AUDIT_VERIFY_SHARD_REPORT = env.AUDIT_VERIFY_SHARD_REPORT!.replace('/reports', reports);
      const r = await runCli(c.args, env);
      expect(r.code, r.stderr).toBe(0);
    }
    const m = merge.spec.jobTemplate.spec.template.spec.containers[0]!;
    const merged = await runCli(m.args.map((a) => a.replace('/reports', reports)));
    const single = await runCli(['verify', '--archive', archive, '--verify-key', key, '--json']);
    expect(single.code).toBe(1);
    expect(merged.code).toBe(1);
    // The head's age is each run's own clock against the digest's time: the two runs may fall on either side of a minute.
    const atAnyMinute = (report: string) => report.replace(/the newest digest is \d+ minutes old/, 'the newest digest is N minutes old');
    expect(atAnyMinute(merged.stdout)).toBe(atAnyMinute(single.stdout));
    expect(single.stdout).toMatch(/the newest digest is \d+ minutes old/);
    expect(JSON.parse(merged.stdout).findings.map((f: { code: string }) => f.code)).toContain('tamper');
  });
});
