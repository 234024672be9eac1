import { describe, expect, it } from 'vitest';
import { eventTime, readRow } from '../../src/seal/read-record.js';

describe('a row read, from the message audit.note_read() writes', () => {
  it('becomes the fields of an audit event, named as audit_log names them', () => {
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

  it('keeps a message it cannot read whole, as malformed', () => {
    for (const bad of ['', 'null', '[1]', '{"s":"public"}', '{"s":"a","t":"b","k":"1","su":"u","cu":"u","at":"yesterday"}']) {
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
  });
});
