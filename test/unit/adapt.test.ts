import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { adaptForAdmin, ADAPTED_MIGRATIONS } from '../../src/capture/adapt.js';
import { SQL_DIR } from '../../src/paths.js';

const migration = (id: string) => readFile(path.join(SQL_DIR, `${id}.sql`), 'utf8');

describe("init as a managed platform's admin role", () => {
  it('leaves out of the migrations exactly what needs a superuser, each part a gap with its repair', async () => {
    const gaps: string[] = [];
    for (const id of ADAPTED_MIGRATIONS) {
      const sql = await migration(id);
      const adapted = adaptForAdmin(id, sql);
      expect(adapted.sql).not.toMatch(
        /CREATE EVENT TRIGGER|ALTER EVENT TRIGGER|REPLICATION;|REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC|pg_read_binary_file\(text, bigint, bigint, boolean\) TO|ALTER DATABASE %I SET pgaudit/,
      );
      for (const g of adapted.gaps) {
        gaps.push(g.gap);
        // The repair is the text left out (or says what to run instead of it): a superuser's init runs it.
        expect(g.sql.length, g.gap).toBeGreaterThan(10);
        expect(g.consequence).not.toBe('');
        expect(g.remedy).not.toBe('');
      }
      // Nothing else changed: what is left out plus what is put in accounts for every difference.
      expect(adapted.sql.length).toBeLessThan(sql.length + 60);
    }
    expect(gaps.sort()).toEqual(['ddl-guard', 'emit-message', 'log-over-sql', 'pgaudit-log-rows', 'pgaudit-settings', 'replication']);
    expect(adaptForAdmin('migrations/004_protection', await migration('migrations/004_protection')).gaps[0]!.sql).toMatch(
      /^DROP EVENT TRIGGER IF EXISTS audit_guard_protected_ddl;\n[\s\S]*ALTER EVENT TRIGGER audit_follow_protected_drop ENABLE ALWAYS;\n$/,
    );
    // A migration without adaptations passes through as it is.
    const plain = await migration('migrations/002_shipping');
    expect(adaptForAdmin('migrations/002_shipping', plain)).toEqual({ sql: plain, gaps: [] });
  });

  it('refuses a migration its adaptation no longer matches, rather than run it half-adapted', () => {
    expect(() => adaptForAdmin('migrations/004_protection', '-- something else entirely\n')).toThrow(
      /adaptation of migrations\/004_protection no longer matches/,
    );
  });
});
