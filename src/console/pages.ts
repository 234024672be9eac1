import { formatHead } from '../verify/chain.js';
import type { Finding } from '../verify/findings.js';
import { describe, type Query } from '../query/filter.js';
import { AUDIT_COLUMNS } from '../query/format.js';
import type { ConsoleRole } from './accounts.js';
import { ACTIONS, fieldsOf } from './form.js';
import { html, type Html } from './html.js';
import type { Found } from './search.js';
import type { Status } from './status.js';

export interface Viewer {
  name: string;
  role: ConsoleRole;
}

export interface PageContext {
  viewer: Viewer | null;
  csrf: string;
  recording: boolean;
  archive: string;
}

const hidden = (name: string, value: string | string[]) =>
  (Array.isArray(value) ? value : [value]).map((v) => html`<input type="hidden" name="${name}" value="${v}" />`);
const csrfField = (c: PageContext) => html`<input type="hidden" name="_csrf" value="${c.csrf}" />`;

/** A page's beginning, up to its heading: a streamed page (a search) sends it first. */
export function pageStart(c: PageContext, title: string): string {
  const nav = c.viewer
    ? html`<nav aria-label="Console">
        <a href="/">Status</a>
        ${c.viewer.role === 'investigator' ? html`<a href="/search">Search</a> <a href="/report">Patient access report</a>` : ''}
        <form method="post" action="/logout" class="inline">${csrfField(c)}<button type="submit">Sign out ${c.viewer.name} (${c.viewer.role})</button></form>
      </nav>`
    : '';
  const recording = c.recording
    ? ''
    : html`<p class="warning" role="alert">
        This console is not recording its use: it was started without --database-url, so searches, reports and exports made here are not in the audit trail.
      </p>`;
  // Open: the page's body follows (PAGE_END closes it). Not formatted as HTML (prettier's embedded
  // formatting is off: it would close the tags here).
  return `<!doctype html>${html`<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} · pg-audit-shipper</title>
<link rel="stylesheet" href="/static/console.css"></head>
<body><header><p class="brand">pg-audit-shipper · ${c.archive}</p>${nav}</header>
<main>${recording}<h1>${title}</h1>`}`;
}

export const PAGE_END = '</main></body></html>';

export function layout(c: PageContext, title: string, body: Html): string {
  return `${pageStart(c, title)}${body.text}${PAGE_END}`;
}

/**
 * How far a search is, as one line; a streamed page appends one every so often and the stylesheet
 * shows only the last (no script needed).
 */
export function progressLine(r: { digests: number; filesRead: number; filesSkippedByIndex: number; matches: number }, atFile: number | null): Html {
  return html`<output class="progress"
    >${atFile === null ? 'Searched' : `Searching at file ${atFile}:`} ${r.digests} signed digests checked, ${r.filesRead} files
    read${r.filesSkippedByIndex ? `, ${r.filesSkippedByIndex} ruled out by their key index` : ''}, ${r.matches} events
    found${atFile === null ? '.' : '…'}</output
  >`;
}

export function loginPage(c: PageContext, error: string | null, via: { local: boolean; provider: string | null }): string {
  return layout(
    c,
    'Sign in',
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
    ${
      via.provider
        ? html`<form method="post" action="/oidc/start" class="stack">${csrfField(c)}<button type="submit">Sign in with ${via.provider}</button></form>`
        : ''
    }
    ${
      via.local
        ? html`<form method="post" action="/login" class="stack">
            ${csrfField(c)}
            <label for="name">Account</label><input id="name" name="name" autocomplete="username" required /> <label for="password">Password</label
            ><input id="password" name="password" type="password" autocomplete="current-password" required />
            <button type="submit">Sign in</button>
          </form>`
        : ''
    }`,
  );
}

export function messagePage(c: PageContext, title: string, message: string, status: 'error' | 'info' = 'error'): string {
  return layout(c, title, html`<p class="${status}" role="${status === 'error' ? 'alert' : 'status'}">${message}</p>`);
}

const ago = (ms: number) =>
  ms < 120_000 ? `${Math.round(ms / 1000)} s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)} min` : `${(ms / 3_600_000).toFixed(1)} h`;

function findingList(c: PageContext, findings: Finding[], canAcknowledge: boolean): Html {
  return html`<ul class="findings">
    ${findings.map(
      (f) =>
        html`<li>
          <strong>${f.code}</strong> at <code>${f.where}</code>: ${f.message}
          ${
            f.id && canAcknowledge && c.recording
              ? html`<form method="post" action="/acknowledge" class="ack">
                  ${csrfField(c)}${hidden('finding', f.id)}
                  <label for="reason-${f.id}">Reason for acknowledging ${f.id}</label>
                  <input id="reason-${f.id}" name="reason" minlength="10" required />
                  <button type="submit">Acknowledge ${f.id}</button>
                </form>`
              : ''
          }
        </li>`,
    )}
  </ul>`;
}

/** Events per day as bars: an inline SVG (no script), with the numbers in a table for screen readers. */
function dayChart<T>(days: Map<string, T>, pick: (t: T) => number, label: string, unit = ''): Html {
  const entries = [...days.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).slice(-60);
  if (entries.length === 0) return html`<p>No events yet.</p>`;
  const max = Math.max(1, ...entries.map(([, t]) => Math.round(pick(t))));
  const w = 12;
  const h = 100;
  const bars = entries.map(([day, t], i) => {
    const v = Math.round(pick(t));
    const bh = Math.round((v / max) * h);
    return html`<rect x="${i * w}" y="${h - bh}" width="${w - 2}" height="${bh}"><title>${day}: ${v}</title></rect>`;
  });
  return html`<figure>
    <svg
      class="chart"
      role="img"
      aria-label="${label}, last ${entries.length} days with events, highest ${max}"
      viewBox="0 0 ${entries.length * w} ${h}"
      width="${Math.min(720, entries.length * w * 2)}"
      height="${h}"
    >
      ${bars}
    </svg>
    <figcaption>${label}: ${entries[0]![0]} to ${entries.at(-1)![0]}, highest ${max}${unit} a day</figcaption>
  </figure>`;
}

export function statusPage(c: PageContext, s: Status | null, busy: boolean, error: string | null, now: Date): string {
  if (!s) {
    return layout(
      c,
      'Status',
      html`${error ? html`<p class="error" role="alert">The last verification could not run: ${error}</p>` : ''}
        <p role="status">${busy ? 'Verifying the archive for the first time; reload in a moment.' : 'Not verified yet.'}</p>`,
    );
  }
  const ch = s.chain;
  const intact = s.findings.length === 0;
  const head = ch.head;
  const totals = [...s.days.values()].reduce(
    (a, t) => ({ trigger: a.trigger + t.trigger, pgaudit: a.pgaudit + t.pgaudit, rowRead: a.rowRead + t.rowRead, denied: a.denied + t.denied }),
    {
      trigger: 0,
      pgaudit: 0,
      rowRead: 0,
      denied: 0,
    },
  );
  const body = html` <section aria-labelledby="verdict">
      <h2 id="verdict" class="${intact ? 'ok' : 'bad'}">${intact ? 'Intact' : `${s.findings.length} finding${s.findings.length === 1 ? '' : 's'}`}</h2>
      <p>
        ${
          intact
            ? 'Every file checked: stored bytes, record chain and Ed25519-signed digests agree, and nothing the chain records is open.'
            : 'The archive does not verify. Each finding says where and what; a finding the chain records can be acknowledged with a reason, which is itself recorded in the chain.'
        }
      </p>
      <dl class="facts">
        <dt>Verified</dt>
        <dd>${s.checkedAt} (${ago(now.getTime() - Date.parse(s.checkedAt))} ago, took ${s.seconds.toFixed(1)} s)${busy ? ' · verifying again now' : ''}</dd>
        <dt>Files</dt>
        <dd>${ch.files} data files, ${ch.heartbeats} heartbeats</dd>
        <dt>Records</dt>
        <dd>${ch.records}</dd>
        <dt>Events</dt>
        <dd>${ch.firstEventAt ?? '-'} to ${ch.lastEventAt ?? '-'}</dd>
        <dt>Head</dt>
        <dd>
          ${head ? html`file ${head.file_seq}, sealed ${head.created_at} (${ago(now.getTime() - Date.parse(head.created_at))} ago) · <code>${formatHead(head.file_seq, ch.headSha256!)}</code>` : 'no digest yet'}
        </dd>
        <dt>Signing key</dt>
        <dd>${head ? html`<code>${head.key_id}</code>` : '-'}</dd>
        <dt>Storage locks</dt>
        <dd>
          ${s.storage ? `${s.storage.versions} object versions read: COMPLIANCE mode and retain-until checked on each` : 'a local directory: no object locks to check'}
        </dd>
        <dt>By source</dt>
        <dd>${totals.trigger} writes (trigger), ${totals.pgaudit} statements (pgaudit), ${totals.rowRead} rows read (row-read), ${totals.denied} denied</dd>
      </dl>
      <form method="post" action="/verify">${csrfField(c)}<button type="submit">Verify now</button></form>
    </section>
    ${
      s.findings.length
        ? html`<section aria-labelledby="findings">
            <h2 id="findings">Findings</h2>
            ${findingList(c, s.findings, c.viewer?.role === 'investigator')}
          </section>`
        : ''
    }
    ${
      s.acknowledged.length
        ? html`<section aria-labelledby="acks">
            <h2 id="acks">Acknowledged</h2>
            <ul>
              ${s.acknowledged.map(
                (a) =>
                  html`<li>
                    <strong>${a.code}</strong> at <code>${a.where}</code>: acknowledged by ${a.acknowledgement.reviewer ?? a.acknowledgement.by} at
                    ${a.acknowledgement.at}: ${a.acknowledgement.reason}
                  </li>`,
              )}
            </ul>
          </section>`
        : ''
    }
    <section aria-labelledby="charts">
      <h2 id="charts">Events per day</h2>
      ${dayChart(s.days, (t) => t.trigger + t.pgaudit + t.rowRead + t.other, 'All events per day')}
      ${dayChart(s.days, (t) => t.pgaudit + t.rowRead, 'Reads per day (pgaudit statements and row reads)')}
      ${dayChart(s.days, (t) => t.denied, 'Denied accesses per day')}
      ${dayChart(s.lag, (seconds) => seconds, "Shipping lag per day (the longest time from a file's last event to its signed digest)", ' s')}
    </section>`;
  return layout(c, 'Status', body);
}

function filterFields(q: Query | null): Html {
  const f = q ? fieldsOf(q) : {};
  const v = (k: string) => (typeof f[k] === 'string' ? (f[k] as string) : '');
  const input = (k: string, label: string, hint = '') =>
    html`<label for="f-${k}">${label}</label><input id="f-${k}" name="${k}" value="${v(k)}" ${hint ? html` placeholder="${hint}"` : ''} />`;
  const chosen = new Set(q?.actions ?? []);
  return html`<fieldset>
    <legend>Filters (all optional; times in UTC unless they say otherwise)</legend>
    <div class="grid">
      ${input('from', 'From', '2026-01-01')}${input('to', 'To (before)', '2026-02-01')}
      ${input('customer', 'Patient (customer id)')}${input('row_id', 'Row id')}
      ${input('table', 'Table', 'schema.table or table')}${input('app_user', 'Application user')} ${input('db_user', 'Database role')}
      <label for="f-outcome">Outcome</label
      ><select id="f-outcome" name="outcome">
        ${['', 'success', 'failure'].map(
          (o) => html`<option value="${o}" ${q?.outcome === o || (!q?.outcome && o === '') ? html` selected` : ''}>${o || 'any'}</option>`,
        )}
      </select>
      <label for="f-source">Source</label
      ><select id="f-source" name="source">
        ${['', 'trigger', 'pgaudit', 'row-read'].map(
          (o) => html`<option value="${o}" ${q?.source === o || (!q?.source && o === '') ? html` selected` : ''}>${o || 'any'}</option>`,
        )}
      </select>
    </div>
    <fieldset class="actions">
      <legend>Actions</legend>
      ${ACTIONS.map((a) => html`<label><input type="checkbox" name="action" value="${a}" ${chosen.has(a) ? html` checked` : ''} /> ${a}</label>`)}
    </fieldset>
  </fieldset>`;
}

export function searchPage(c: PageContext, q: Query | null, error: string | null): string {
  return layout(
    c,
    'Search the trail',
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <form method="post" action="/search" class="stack">${csrfField(c)}${filterFields(q)}<button type="submit">Search</button></form>`,
  );
}

const plainTime = (k: string) => k.replace(/T00:00:00\.000000Z$/, '').replace('.000000Z', 'Z');
const cell = (v: unknown) => (v === null || v === undefined ? '' : String(v));

function eventDetail(f: Found): Html {
  const r = f.record;
  const fields = ['seq', 'chain', ...AUDIT_COLUMNS].filter((k) => r[k] !== undefined && r[k] !== null);
  return html`<details>
    <summary>Details and proof</summary>
    <dl class="detail">
      ${fields.map(
        (k) =>
          html`<dt>${k}</dt>
            <dd><code>${cell(r[k])}</code></dd>`,
      )}
      <dt>stored in</dt>
      <dd><code>${f.objectKey}</code> (file ${f.fileSeq})</dd>
      <dt>signed digest</dt>
      <dd><code>${f.digestKey}</code>, key <code>${f.keyId}</code></dd>
      <dt>chain position</dt>
      <dd>record ${r.seq}, chain hash <code>${r.chain}</code></dd>
    </dl>
  </details>`;
}

export function eventsTable(events: Found[], caption: string): Html {
  return html`<table>
    <caption>
      ${caption}
    </caption>
    <thead>
      <tr>
        <th scope="col">Occurred (UTC)</th>
        <th scope="col">Who (application)</th>
        <th scope="col">Database role</th>
        <th scope="col">Action</th>
        <th scope="col">Table</th>
        <th scope="col">Row</th>
        <th scope="col">Columns</th>
        <th scope="col">Patient</th>
        <th scope="col">Source</th>
        <th scope="col">Outcome</th>
        <th scope="col">Proof</th>
      </tr>
    </thead>
    <tbody>
      ${events.map((f) => {
        const r = f.record;
        return html`<tr>
          <td>${cell(r.occurred_at)}</td>
          <td>${cell(r.app_user_id)}</td>
          <td>${cell(r.session_user_name)}${r.current_role_name && r.current_role_name !== r.session_user_name ? ` as ${cell(r.current_role_name)}` : ''}</td>
          <td>${cell(r.action)}</td>
          <td>${cell(r.schema_name)}${r.schema_name ? '.' : ''}${cell(r.table_name)}${r.relation_name ? ` (${cell(r.relation_name)})` : ''}</td>
          <td>${cell(r.row_id)}</td>
          <td>${cell(r.changed_columns)}</td>
          <td>${cell(r.app_customer_id)}</td>
          <td>${cell(r.source)}</td>
          <td>${cell(r.outcome)}</td>
          <td>${eventDetail(f)}</td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

function carry(c: PageContext, q: Query): Html {
  return html`${csrfField(c)}${Object.entries(fieldsOf(q)).map(([k, v]) => hidden(k, v))}`;
}

/** The answer to a search, below the heading and progress a streamed page sent first. */
export function resultsBody(
  c: PageContext,
  q: Query,
  r: { events: Found[]; total: number; summary: string; offset: number; limit: number; failed: boolean },
): Html {
  const last = Math.min(r.offset + r.events.length, r.total);
  const pager = (offset: number, label: string) =>
    html`<form method="post" action="/search" class="inline">${carry(c, q)}${hidden('offset', String(offset))}<button type="submit">${label}</button></form>`;
  return html`<p role="status">
      <strong>${r.total}</strong> event${r.total === 1 ? '' : 's'}: ${describe(q)}${r.total ? ` · showing ${r.offset + 1}–${last}` : ''}
    </p>
    ${r.failed ? html`<p class="error" role="alert">Some files in the range failed verification: their records are not shown and may hold matches. See the proof below.</p>` : ''}
    <div class="pager">
      ${r.offset > 0 ? pager(Math.max(0, r.offset - r.limit), 'Previous page') : ''}${last < r.total ? pager(last, 'Next page') : ''}
      <form method="post" action="/evidence.zip" class="inline">${carry(c, q)}<button type="submit">Download evidence package (zip)</button></form>
    </div>
    ${eventsTable(r.events, `Events ${r.total ? r.offset + 1 : 0}–${last} of ${r.total}`)}
    <h2>Proof</h2>
    <pre class="summary">${r.summary}</pre>
    <form method="post" action="/search" class="stack">${csrfField(c)}${filterFields(q)}<button type="submit">Search again</button></form>`;
}

export function reportFormPage(c: PageContext, error: string | null, q: Query | null): string {
  const v = (k: 'customer' | 'from' | 'to') => (q ? (fieldsOf(q)[k] as string | undefined) : undefined) ?? '';
  return layout(
    c,
    'Patient access report',
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <p>
        Every access to one patient's records in a date range (up to six years): when, who, what, how and with what outcome, each event verified against the
        signed archive.
      </p>
      <form method="post" action="/report" class="stack">
        ${csrfField(c)} <label for="r-customer">Patient (customer id)</label><input id="r-customer" name="customer" required value="${v('customer')}" />
        <label for="r-from">From</label><input id="r-from" name="from" required placeholder="2021-01-01" value="${v('from')}" />
        <label for="r-to">To (before)</label><input id="r-to" name="to" required placeholder="2027-01-01" value="${v('to')}" />
        <button type="submit">Make the report</button>
      </form>`,
  );
}

export function reportPage(
  c: PageContext,
  q: Query,
  r: { events: Found[]; total: number; truncated: boolean; summary: string; head: string | null; madeAt: string; by: string },
): string {
  const download = (action: string, label: string) =>
    html`<form method="post" action="${action}" class="inline">${carry(c, q)}<button type="submit">${label}</button></form>`;
  return layout(
    c,
    `Access report for patient ${q.customer}`,
    html`<p class="noprint">
        ${download('/report.pdf', 'Download PDF')} ${download('/report.csv', 'Download CSV')} ${download('/evidence.zip', 'Download evidence package (zip)')}
      </p>
      <dl class="facts">
        <dt>Patient</dt>
        <dd>${q.customer}</dd>
        <dt>Period</dt>
        <dd>${plainTime(q.from!)} to ${plainTime(q.to!)} (UTC, the end excluded)</dd>
        <dt>Accesses</dt>
        <dd>${r.total}</dd>
        <dt>Verified against</dt>
        <dd>${r.head ? html`archive head <code>${r.head}</code>` : 'an archive without a head'}</dd>
        <dt>Made</dt>
        <dd>${r.madeAt} by ${r.by}</dd>
      </dl>
      ${r.truncated ? html`<p class="warning" role="alert">The report shows the first ${r.events.length} of ${r.total} accesses; the CSV holds them all.</p>` : ''}
      ${eventsTable(r.events, `Accesses to patient ${q.customer}'s records`)}
      <h2>Proof</h2>
      <pre class="summary">${r.summary}</pre>`,
  );
}
