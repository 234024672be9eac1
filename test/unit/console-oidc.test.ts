import { describe, expect, it } from 'vitest';
import { nameFor, roleFor } from '../../src/console/oidc.js';

const groups = { groupsClaim: 'groups', investigators: ['compliance', 'privacy-office'], viewers: ['it-ops'] };

describe("a console role from the identity provider's groups", () => {
  it('makes an investigator of any investigators group, a viewer of a viewers group, and nobody of the rest', () => {
    expect(roleFor({ groups: ['staff', 'privacy-office'] }, groups).role).toBe('investigator');
    expect(roleFor({ groups: ['it-ops', 'compliance'] }, groups).role).toBe('investigator'); // the wider role wins
    expect(roleFor({ groups: ['it-ops'] }, groups).role).toBe('viewer');
    expect(roleFor({ groups: ['staff'] }, groups).role).toBeNull();
    expect(roleFor({}, groups).role).toBeNull();
    expect(roleFor({ groups: 'it-ops staff' }, groups)).toEqual({ role: 'viewer', groups: ['it-ops', 'staff'] }); // a space-separated claim
    expect(roleFor({ roles: ['compliance'] }, { ...groups, groupsClaim: 'roles' }).role).toBe('investigator');
    expect(roleFor({ groups: [7, null, 'compliance'] }, groups).groups).toEqual(['compliance']);
  });

  it('names the person by e-mail, else user name, else subject; never nobody', () => {
    expect(nameFor({ sub: 's1', email: 'ann@clinic.example', preferred_username: 'ann' })).toBe('ann@clinic.example');
    expect(nameFor({ sub: 's1', preferred_username: 'ann', email: ' ' })).toBe('ann');
    expect(nameFor({ sub: 's1' })).toBe('s1');
    expect(() => nameFor({})).toThrow(/named nobody/);
  });
});
