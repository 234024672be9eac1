import { describe, expect, it } from 'vitest';
import { joinChunks, lineKey, type CloudLogEntry } from '../../src/capture/ingest/cloud-logging.js';
import { decodeMessage, pubsubSubscription, type ReceivedMessage } from '../../src/capture/ingest/pubsub.js';

const where = { project: 'clinic-prj', instance: 'clinic-db' };
const request = (more: object = {}) => ({
  '@type': 'type.googleapis.com/google.cloud.sql.audit.v1.PgAuditEntry',
  auditType: 'OBJECT',
  auditClass: 'READ',
  command: 'SELECT',
  object: 'public.customers',
  database: 'clinic',
  user: 'app_login',
  databaseSessionId: 4711,
  statementId: 3,
  substatementId: 1,
  statement: 'SELECT 1',
  ...more,
});
const logEntry = (id: string, more: object = {}, labels: Record<string, string> = { database_id: 'clinic-prj:clinic-db' }) => ({
  insertId: id,
  timestamp: '2026-12-07T12:00:00.123456Z',
  logName: 'projects/clinic-prj/logs/cloudaudit.googleapis.com%2Fdata_access',
  resource: { type: 'cloudsql_database', labels },
  protoPayload: { request: request(more) },
});
const message = (data: unknown): ReceivedMessage => ({
  ackId: 'a1',
  message: {
    data: Buffer.from(typeof data === 'string' ? data : JSON.stringify(data)).toString('base64'),
    messageId: '17',
    publishTime: '2026-12-07T12:00:01Z',
  },
});

describe('Pub/Sub messages of a pgaudit log sink', () => {
  it('takes a message whose data is one of the instance’s PgAuditEntry log entries; counts other entries as not ours; records what is no entry', () => {
    const d = decodeMessage(message(logEntry('x1')), where);
    expect(d.kind).toBe('entry');
    expect(d.kind === 'entry' && d.entry.insertId).toBe('x1');
    // AlloyDB names the instance by instance_id
    expect(
      decodeMessage(message(logEntry('x2', { '@type': 'type.googleapis.com/google.cloud.alloydb.audit.v1.PgAuditEntry' }, { instance_id: 'clinic-db' })), where)
        .kind,
    ).toBe('entry');
    expect(decodeMessage(message(logEntry('x3', {}, { database_id: 'clinic-prj:other-db' })), where).kind).toBe('other');
    expect(decodeMessage(message(logEntry('x4', { '@type': 'type.googleapis.com/google.cloud.audit.AuditLog' })), where).kind).toBe('other');
    expect(decodeMessage(message('not json'), where)).toEqual({ kind: 'unreadable', why: expect.stringMatching(/^its data is not JSON/) });
    expect(decodeMessage(message({ hello: 'world' }), where)).toEqual({ kind: 'unreadable', why: 'its data is no LogEntry (an insertId and a timestamp)' });
    expect(decodeMessage({ ackId: 'a', message: {} }, where).kind).toBe('unreadable');
  });

  it('keys a line in chunks the same whichever chunk names it, so a chunk delivered again after its line was stored is known as that line', () => {
    const chunk = (id: string, i: number) => logEntry(id, { chunkCount: '3', chunkIndex: String(i), statement: `part${i}` }) as CloudLogEntry;
    const [whole] = joinChunks([chunk('c2', 2), chunk('c1', 1), chunk('c3', 3)]);
    expect(whole!.missing).toEqual([]);
    expect(whole!.statement).toBe('part1part2part3');
    const [alone] = joinChunks([chunk('c2', 2)]);
    expect(alone!.missing).toEqual([1, 3]);
    expect(lineKey(alone!)).toBe(lineKey(whole!));
    expect(lineKey(whole!)).toMatch(/^gcl:2026-12-07T12:00:00.123456Z\/chunks-[0-9a-f]{24}$/);
    // another statement of the session is another line; a whole entry is keyed by its own identity
    const [other] = joinChunks([logEntry('d1', { chunkCount: '3', chunkIndex: '1', statementId: 4 }) as CloudLogEntry]);
    expect(lineKey(other!)).not.toBe(lineKey(whole!));
    expect(lineKey(joinChunks([logEntry('x1') as CloudLogEntry])[0]!)).toBe('gcl:2026-12-07T12:00:00.123456Z/x1');
  });

  it('names the subscription as Pub/Sub does, or says what is wrong', () => {
    expect(pubsubSubscription('projects/clinic-prj/subscriptions/pgaudit-ingest')).toBe('projects/clinic-prj/subscriptions/pgaudit-ingest');
    expect(() => pubsubSubscription(undefined)).toThrow(/^--log-source pubsub needs --pubsub-subscription \(AUDIT_PUBSUB_SUBSCRIPTION\)/);
    expect(() => pubsubSubscription('pgaudit')).toThrow('--pubsub-subscription pgaudit is not a subscription name: projects/<project>/subscriptions/<name>');
    expect(() => pubsubSubscription('projects/clinic-prj/topics/pgaudit')).toThrow(/is not a subscription name/);
  });
});
