import { describe, expect, it } from 'vitest';
import { accountLine, checkPassword, hashPassword, parseAccounts } from '../../src/console/accounts.js';
import { html } from '../../src/console/html.js';
import { queryFrom, reportQueryFrom } from '../../src/console/form.js';
import { layout, pageStart, PAGE_END } from '../../src/console/pages.js';

describe('console pages and forms', () => {
  it('escapes every value put into a page, keeps markup made by html``', () => {
    const evil = `"><script>alert(1)</script>'&`;
    expect(html`<p title="${evil}">${evil}</p>`.text).toBe(
      '<p title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;&amp;">&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;&amp;</p>',
    );
    expect(html`<ul>${['a<', 'b'].map((x) => html`<li>${x}</li>`)}</ul>`.text).toBe('<ul><li>a&lt;</li><li>b</li></ul>');
    expect(html`${null}${undefined}${false}${0}`.text).toBe('0');
  });

  it('puts the body inside <main>, after the heading: a streamed page sends the start, then its body, then the end', () => {
    const c = { viewer: null, csrf: 't', recording: true, archive: 'file:///a' };
    const page = layout(c, 'Title <1>', html`<p>body</p>`);
    expect(page).toMatch(/^<!doctype html><html lang="en">\n<head>.*<title>Title &lt;1&gt; · pg-audit-shipper<\/title>/s);
    expect(page.endsWith('<main><h1>Title &lt;1&gt;</h1><p>body</p></main></body></html>')).toBe(true);
    expect(page.match(/<\/main>/g)).toHaveLength(1);
    expect(pageStart(c, 'x')).not.toMatch(/<\/(main|body|html)>/);
    expect(PAGE_END).toBe('</main></body></html>');
  });

  it("reads the search form as query reads its flags, and says what is wrong in the form's words", () => {
    expect(queryFrom({ customer: ' 42 ', action: ['select', 'UPDATE'], from: '2026-01-01', outcome: 'failure', source: '' })).toEqual({
      from: '2026-01-01T00:00:00.000000Z',
      to: null,
      dbUser: null,
      appUser: null,
      customer: '42',
      table: null,
      rowId: null,
      actions: ['SELECT', 'UPDATE'],
      outcome: 'failure',
      source: null,
    });
    expect(() => queryFrom({ from: 'yesterday' })).toThrow(/From takes a date or time/);
    expect(() => queryFrom({ from: '2026-02-01', to: '2026-01-01' })).toThrow(/From is not before To/);
    expect(() => queryFrom({ action: 'DROP' })).toThrow(/DROP is not an audited action/);
    expect(() => queryFrom({ source: 'gossip' })).toThrow(/Source is trigger, pgaudit or row-read/);
  });

  it('asks a report for one patient over at most six years', () => {
    expect(reportQueryFrom({ customer: '7', from: '2021-01-01', to: '2027-01-01' }).customer).toBe('7');
    expect(() => reportQueryFrom({ from: '2021-01-01', to: '2027-01-01' })).toThrow(/Patient \(customer id\) is required/);
    expect(() => reportQueryFrom({ customer: '7', from: '2010-01-01', to: '2027-01-01' })).toThrow(/longer than six years/);
    expect(() => reportQueryFrom({ customer: '7' })).toThrow(/From and To are required/);
  });
});

describe('console accounts', () => {
  it('checks a password against its scrypt hash; a wrong one, an unknown account and a foreign hash fail', async () => {
    const hash = await hashPassword('a long enough password');
    expect(await checkPassword('a long enough password', hash)).toBe(true);
    expect(await checkPassword('a long enough passworD', hash)).toBe(false);
    expect(await checkPassword('a long enough password', undefined)).toBe(false);
    expect(await checkPassword('x', '$2b$10$bcrypthashfromelsewhere')).toBe(false);
    const file = `# accounts\n\n${accountLine({ name: 'ann', role: 'viewer', hash })}\n`;
    expect([...parseAccounts(file, 'f').values()]).toEqual([{ name: 'ann', role: 'viewer', hash }]);
    expect(() => parseAccounts(`${accountLine({ name: 'ann', role: 'viewer', hash })}\nann:viewer:${hash}\n`, 'f')).toThrow(
      /f line 2: account ann is listed twice/,
    );
    expect(() => parseAccounts('ann:viewer:plaintext', 'f')).toThrow(/f line 1: the password hash is not one/);
  });
});
