import { describe, expect, it } from 'vitest';
import { eventTime, isoTime, readRow, splitQualifiedName } from '../../src/seal/read-record.js';

describe('a row read, from the message audit.note_read() writes', () => {
  const fields = {
    source: 'row-read',
    action: 'SELECT',
    outcome: 'success',
    row_id: '7',
    session_user_name: 'app_login',
    app_customer_id: '7',
    backend_pid: '24358',
  };

  it('becomes the fields of an audit event, named as audit_log names them (version 9: a JSON array)', () => {
    // As PostgreSQL 15 printed it (pg_logical_slot_get_changes with test_decoding), in a session whose time zone is an hour east of UTC.
    const content = Buffer.from('[1, "public.customers", "7", "app_login", "phi_app", "dr.x", "7", "2026-11-29T04:46:23.6925+01:00", 24358, "psql"]');
    expect(readRow(content)).toEqual({
      row: {
        ...fields,
        occurred_at: '2026-11-29 03:46:23.6925+00',
        schema_name: 'public',
        table_name: 'customers',
        current_role_name: 'phi_app',
        app_user_id: 'dr.x',
        application_name: 'psql',
      },
      malformed: null,
    });
  });

  it('reads the role in effect as the login when the session did not SET ROLE, and empty settings as unset', () => {
    const content = Buffer.from(JSON.stringify([1, '"Clinic ""A"""."Notes"', '7', 'app_login', 'none', '', '7', '2026-11-29T03:46:23+00:00', 24358, '']));
    expect(readRow(content)).toEqual({
      row: {
        ...fields,
        occurred_at: '2026-11-29 03:46:23+00',
        schema_name: 'Clinic "A"',
        table_name: 'Notes',
        current_role_name: 'app_login',
        app_user_id: null,
        application_name: null,
      },
      malformed: null,
    });
  });

  it("becomes the same fields from version 8's message (a JSON object), which a slot may still hold at an upgrade", () => {
    const content = Buffer.from(
      '{"s" : "public", "t" : "customers", "k" : "7", "su" : "app_login", "cu" : "phi_app", "au" : "dr.x", "ac" : "7", ' +
        '"at" : "2026-11-29 03:46:23.692500", "pid" : 24358, "app" : "psql"}',
    ); // as json_build_object prints it
    expect(readRow(content)).toEqual({
      row: {
        occurred_at: '2026-11-29 03:46:23.6925+00',
        source: 'row-read',
        action: 'SELECT',
        outcome: 'success',
        schema_name: 'public',
        table_name: 'customers',
        row_id: '7',
        session_user_name: 'app_login',
        current_role_name: 'phi_app',
        app_user_id: 'dr.x',
        app_customer_id: '7',
        application_name: 'psql',
        backend_pid: '24358',
      },
      malformed: null,
    });
  });

  it('names the partition a row is stored in (layout 2, sql/migrations/011) as relation_name, as the write triggers do', () => {
    // As PostgreSQL 15 printed it for a read through the partitioned table clinic.visits.
    const content = Buffer.from(
      '[2, "clinic.visits", "7,2026-02-01", "app_login", "none", null, "7", "2026-11-29T03:46:23.6925+00:00", 24358, "psql", "clinic.\\"Visits 2026\\""]',
    );
    expect(readRow(content)).toEqual({
      row: {
        ...fields,
        occurred_at: '2026-11-29 03:46:23.6925+00',
        schema_name: 'clinic',
        table_name: 'visits',
        row_id: '7,2026-02-01',
        relation_name: 'clinic."Visits 2026"',
        current_role_name: 'app_login',
        app_user_id: null,
        application_name: 'psql',
      },
      malformed: null,
    });
    // A table that is not partitioned, through the same function: no relation_name, as in layout 1.
    const plain = readRow(Buffer.from(JSON.stringify([2, 'public.t', '1', 'u', 'none', null, null, '2026-11-29T03:46:23+00:00', 1, 'psql', null])));
    expect(plain.malformed).toBeNull();
    expect(Object.keys(plain.row)).not.toContain('relation_name');
  });

  it('keeps a message it cannot read whole, as malformed', () => {
    const good = [1, 'public.t', '1', 'u', 'none', null, null, '2026-11-29T03:46:23+00:00', 1, 'psql'];
    const unreadable = [
      '',
      'null',
      '[1]',
      '{"s":"public"}',
      '{"s":"a","t":"b","k":"1","su":"u","cu":"u","at":"yesterday"}',
      JSON.stringify([2, ...good.slice(1)]), // layout 2 without its partition
      JSON.stringify([3, ...good.slice(1), null]), // a layout this version does not know
      JSON.stringify([...good, 'extra']), // layout 1 with a partition
      JSON.stringify([2, ...good.slice(1), 'visits_2026']), // a partition not schema-qualified
      JSON.stringify([2, ...good.slice(1), 42]),
      JSON.stringify(good.map((v, i) => (i === 1 ? 'customers' : v))), // not schema-qualified
      JSON.stringify(good.map((v, i) => (i === 2 ? 7 : v))), // key not text
      JSON.stringify(good.map((v, i) => (i === 7 ? '2026-11-29 03:46:23' : v))), // no offset
      JSON.stringify(good.map((v, i) => (i === 8 ? '1' : v))),
    ];
    expect(readRow(Buffer.from(JSON.stringify(good))).malformed).toBeNull();
    for (const bad of unreadable) {
      expect(readRow(Buffer.from(bad)).malformed, bad).toBe(bad);
    }
    expect(readRow(Buffer.from('x'.repeat(5000))).malformed).toHaveLength(2000);
  });

  it('spells times as the server prints a timestamptz in UTC', () => {
    expect(eventTime('2026-11-29 03:46:23.000000')).toBe('2026-11-29 03:46:23+00');
    expect(eventTime('2026-11-29 03:46:23.120000')).toBe('2026-11-29 03:46:23.12+00');
    expect(eventTime('2026-11-29 03:46:23')).toBe('2026-11-29 03:46:23+00');
    expect(eventTime('2026-11-29T03:46:23Z')).toBeNull();
    expect(eventTime(null)).toBeNull();
    expect(isoTime('2026-11-29T03:46:23.120000+00:00')).toBe('2026-11-29 03:46:23.12+00');
    expect(isoTime('2026-11-28T22:16:23.5-05:30')).toBe('2026-11-29 03:46:23.5+00');
    expect(isoTime('2026-01-01T00:30:00+01:00')).toBe('2025-12-31 23:30:00+00');
    expect(isoTime('1850-01-01T00:00:00+00:53:28')).toBe('1849-12-31 23:06:32+00');
    expect(isoTime('2026-11-29 03:46:23+00')).toBeNull();
  });

  it('splits a qualified name as PostgreSQL quotes it', () => {
    expect(splitQualifiedName('public.t')).toEqual(['public', 't']);
    expect(splitQualifiedName('"a.b"."c""d"')).toEqual(['a.b', 'c"d']);
    expect(splitQualifiedName('t')).toBeNull();
    expect(splitQualifiedName('a.b.c')).toBeNull();
    expect(splitQualifiedName('"a.b')).toBeNull();
  });
});
