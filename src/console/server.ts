import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log.js';
import { describe, type Query } from '../query/filter.js';
import type { StorageReport } from '../verify/storage-s3.js';
import { checkPassword, type Account } from './accounts.js';
import type { OidcSignIn, PendingSignIn } from './oidc.js';
import { html } from './html.js';
import { CONSOLE_CSS } from './style.js';
import { SignInThrottle } from './throttle.js';
import { FormError, one, queryFrom, reportQueryFrom, type FormBody } from './form.js';
import {
  layout,
  loginPage,
  messagePage,
  PAGE_END,
  pageStart,
  progressLine,
  reportFormPage,
  reportPage,
  resultsBody,
  searchPage,
  statusPage,
  type PageContext,
  type Viewer,
} from './pages.js';
import type { Recorder } from './recorder.js';
import { reportPdf } from './report-pdf.js';
import { csvFile, evidenceZip, searchAll, searchPage as runSearch, type Archive, type Download, type Found } from './search.js';
import { createReadStream } from 'node:fs';
import { ScanCancelled } from '../query/scan.js';
import { PassThrough } from 'node:stream';
import { checkStatus, type Status } from './status.js';

export interface ConsoleOptions {
  archive: Archive;
  accounts: Map<string, Account>;
  /** OpenID Connect sign-in, when configured (beside local accounts, or instead of them) */
  oidc: OidcSignIn | null;
  /** the console's URL as browsers reach it (the OIDC redirect is made from it) */
  publicUrl: () => string;
  recorder: Recorder;
  /** the storage's locks, read with each verification (null: a local directory) */
  storage: () => Promise<StorageReport | null>;
  sessionTtlMs: number;
  /** how often the status page's verification runs again on its own */
  refreshMs: number;
  tls: { key: Buffer; cert: Buffer } | null;
  log: Logger;
  now?: () => Date;
}

/** Events one page of results shows. */
export const PAGE_SIZE = 50;
/** Accesses a report page or PDF lists; the CSV lists every one. */
export const REPORT_ROWS = 10_000;

declare module 'fastify' {
  interface Session {
    viewer?: Viewer;
    oidc?: PendingSignIn;
  }
}

/** The latest verification, run again every `refreshMs` and on demand, one run at a time. */
class StatusKeeper {
  status: Status | null = null;
  error: string | null = null;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: ConsoleOptions) {}

  get busy(): boolean {
    return this.running !== null;
  }

  refresh(): Promise<void> {
    this.running ??= checkStatus(this.o.archive.reader, {
      keys: this.o.archive.keys,
      ...(this.o.archive.workers !== undefined ? { workers: this.o.archive.workers } : {}),
      storage: this.o.storage,
      ...(this.o.now ? { now: this.o.now } : {}),
    })
      .then((s) => {
        this.status = s;
        this.error = null;
        this.o.log.info({ findings: s.findings.length, files: s.chain.files, seconds: s.seconds }, 'console: archive verified');
      })
      .catch((err: unknown) => {
        this.error = err instanceof Error ? err.message : String(err);
        this.o.log.error({ err: this.error }, 'console: verification could not run');
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.o.refreshMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}

/**
 * The compliance console: a read-only web application over the archive (status, search, patient
 * access reports, evidence), each answer verified as `verify` and `query` verify it, and each use
 * recorded in audit_log before it is shown. Server-rendered HTML and no script: filters travel in
 * POST bodies, never in URLs, and no page is cached.
 */
export async function buildConsole(o: ConsoleOptions): Promise<{ app: FastifyInstance; keeper: StatusKeeper }> {
  const { default: Fastify } = await import('fastify');
  const { default: cookie } = await import('@fastify/cookie');
  const { default: session } = await import('@fastify/session');
  const { default: csrf } = await import('@fastify/csrf-protection');
  const { default: helmet } = await import('@fastify/helmet');
  const { default: formbody } = await import('@fastify/formbody');
  const now = o.now ?? (() => new Date());
  const app = Fastify({ logger: false, ...(o.tls ? { https: o.tls } : {}), trustProxy: false });
  const keeper = new StatusKeeper(o);

  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        // The OIDC sign-in form is answered by a redirect to the provider: browsers apply form-action to it.
        formAction: ["'self'", ...(o.oidc ? [o.oidc.origin] : [])],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
    hsts: o.tls !== null,
  });
  await app.register(formbody);
  await app.register(cookie);
  await app.register(session, {
    secret: randomBytes(32).toString('base64'),
    cookieName: 'console_session',
    saveUninitialized: false,
    // Lax, not strict: the identity provider's redirect back (a cross-site GET) must bring the session
    // that holds the sign-in's PKCE verifier. Every state-changing request is a POST with a CSRF token.
    cookie: { secure: o.tls !== null, httpOnly: true, sameSite: 'lax', maxAge: o.sessionTtlMs, path: '/' },
  });
  await app.register(csrf, { sessionPlugin: '@fastify/session' });

  // Pages hold PHI: nothing is kept by the browser or a proxy.
  app.addHook('onSend', async (req, reply, payload) => {
    if (!req.url.startsWith('/static/')) reply.header('cache-control', 'no-store');
    return payload;
  });

  const ctx = async (req: FastifyRequest, reply: FastifyReply): Promise<PageContext> => ({
    viewer: req.session.viewer ?? null,
    csrf: await reply.generateCsrf(),
    recording: o.recorder.recording,
    archive: o.archive.location,
  });
  const send = (reply: FastifyReply, page: string, status = 200) => reply.code(status).type('text/html; charset=utf-8').send(page);

  const signedIn = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!req.session.viewer) return reply.redirect('/login', 303);
  };
  const investigator = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!req.session.viewer) return reply.redirect('/login', 303);
    if (req.session.viewer.role !== 'investigator') {
      return send(
        reply,
        messagePage(
          await ctx(req, reply),
          'Not allowed',
          `Your role is ${req.session.viewer.role}: it shows the status only. Searches, reports and evidence need the investigator role.`,
        ),
        403,
      );
    }
  };
  // The token travels in the form body, which is parsed after onRequest: checked before the handler.
  const guarded = { preHandler: app.csrfProtection };

  app.setErrorHandler(async (err, req, reply) => {
    const e = err as { code?: string; statusCode?: number; message: string };
    if (e.code === 'FST_CSRF_INVALID_TOKEN' || e.code === 'FST_CSRF_MISSING_SECRET') {
      return send(
        reply,
        messagePage(await ctx(req, reply), 'Form expired', 'This form expired or did not come from this console: open the page again and resend it.'),
        403,
      );
    }
    o.log.error({ err: e.message, url: req.url }, 'console: request failed');
    return send(reply, messagePage(await ctx(req, reply), 'Something went wrong', e.message), e.statusCode && e.statusCode < 600 ? e.statusCode : 500);
  });

  app.get('/static/console.css', async (_req, reply) => reply.type('text/css').header('cache-control', 'max-age=3600').send(CONSOLE_CSS));

  const signIns = { local: o.accounts.size > 0, provider: o.oidc?.provider ?? null };
  const throttle = new SignInThrottle();
  app.get('/login', async (req, reply) => send(reply, loginPage(await ctx(req, reply), null, signIns)));
  app.post('/login', guarded, async (req, reply) => {
    const b = req.body as FormBody;
    const name = one(b, 'name');
    // Per account, not per address: behind a proxy every person has the proxy's address, and one
    // guesser would lock everyone out. (A guesser can still lock one account out for the window.)
    const keys = [`account:${name}`];
    const wait = throttle.waitFor(keys);
    if (wait > 0) {
      o.log.warn({ account: name.slice(0, 64), address: req.ip }, 'console: sign-in refused, too many failures');
      return send(reply, loginPage(await ctx(req, reply), `Too many failed sign-ins: try again in ${Math.ceil(wait / 60_000)} min.`, signIns), 429);
    }
    const account = o.accounts.get(name);
    const ok = await checkPassword(typeof b.password === 'string' ? b.password : '', account?.hash);
    if (!ok || !account) {
      throttle.failed(keys);
      o.log.warn({ account: name.slice(0, 64), address: req.ip }, 'console: sign-in refused');
      return send(reply, loginPage(await ctx(req, reply), 'That account and password do not match.', signIns), 401);
    }
    throttle.succeeded(keys);
    await req.session.regenerate(); // a new session id at sign-in: none fixed beforehand carries over
    req.session.viewer = { name: account.name, role: account.role };
    o.log.info({ account: account.name, role: account.role }, 'console: signed in');
    return reply.redirect('/', 303);
  });
  if (o.oidc) {
    const oidc = o.oidc;
    const redirectUri = () => new URL('oidc/callback', o.publicUrl()).href;
    app.post('/oidc/start', guarded, async (req, reply) => {
      const { url, pending } = await oidc.start(redirectUri());
      req.session.oidc = pending;
      return reply.redirect(url, 303);
    });
    app.get('/oidc/callback', async (req, reply) => {
      const pending = req.session.oidc;
      const c = await ctx(req, reply);
      if (!pending) return send(reply, loginPage(c, 'That sign-in expired or did not start here: sign in again.', signIns), 400);
      req.session.oidc = undefined;
      let who: Awaited<ReturnType<OidcSignIn['finish']>>;
      try {
        who = await oidc.finish(new URL(req.url, o.publicUrl()), pending);
      } catch (err) {
        o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'console: OIDC sign-in refused');
        return send(reply, loginPage(c, `The identity provider's answer was refused: ${err instanceof Error ? err.message : String(err)}`, signIns), 401);
      }
      if (who.role === null) {
        o.log.warn({ account: who.name, groups: who.groups }, 'console: OIDC sign-in without a console role');
        return send(
          reply,
          messagePage(c, 'Not allowed', `${who.name} signed in at ${oidc.provider}, but is in none of the groups this console admits; ask its administrator.`),
          403,
        );
      }
      await req.session.regenerate();
      req.session.viewer = { name: who.name, role: who.role };
      o.log.info({ account: who.name, role: who.role, via: oidc.provider }, 'console: signed in');
      return reply.redirect('/', 303);
    });
  }
  app.post('/logout', guarded, async (req, reply) => {
    await req.session.destroy();
    return reply.redirect('/login', 303);
  });

  app.get('/', { onRequest: signedIn }, async (req, reply) => send(reply, statusPage(await ctx(req, reply), keeper.status, keeper.busy, keeper.error, now())));
  app.post('/verify', { onRequest: signedIn, preHandler: app.csrfProtection }, async (_req, reply) => {
    void keeper.refresh();
    return reply.redirect('/', 303);
  });

  app.get('/search', { onRequest: investigator }, async (req, reply) => send(reply, searchPage(await ctx(req, reply), null, null)));
  app.post('/search', { onRequest: investigator, preHandler: app.csrfProtection }, async (req, reply) => {
    const b = req.body as FormBody;
    const c = await ctx(req, reply);
    let q: Query;
    try {
      q = queryFrom(b);
    } catch (err) {
      if (err instanceof FormError) return send(reply, searchPage(c, null, err.message), 400);
      throw err;
    }
    const offset = Math.max(0, Number.parseInt(one(b, 'offset') || '0', 10) || 0);
    // The page is sent as the search goes: its heading and a line of progress at once, more lines
    // as files are read (every quarter second at most), the answer once its use is recorded.
    // Leaving the page (its Cancel link, another page, closing it) stops the search between files.
    const out = new PassThrough();
    const signal = abortOnClose(reply);
    void (async () => {
      out.write(pageStart(c, 'Search results'));
      out.write(html`<p class="noprint"><a href="/search">Cancel this search</a></p>`.text);
      let shown = 0;
      try {
        const r = await runSearch(
          o.archive,
          q,
          { offset, limit: PAGE_SIZE },
          {
            signal,
            onProgress: (report, at) => {
              if (Date.now() - shown < 250) return;
              shown = Date.now();
              out.write(progressLine(report, at).text);
            },
          },
        );
        out.write(progressLine(r.report, null).text);
        await o.recorder.record('CONSOLE SEARCH', c.viewer!.name, q.customer, { question: describe(q), query: q, offset, results: r.total });
        out.write(resultsBody(c, q, { ...r, offset, limit: PAGE_SIZE, failed: r.report.findings.length > 0 }).text);
      } catch (err) {
        if (err instanceof ScanCancelled) {
          o.log.info({ account: c.viewer!.name }, 'console: search cancelled');
        } else {
          o.log.error({ err: err instanceof Error ? err.message : String(err) }, 'console: search failed');
          out.write(
            html`<p class="error" role="alert">The search failed, and its answer is not shown: ${err instanceof Error ? err.message : String(err)}</p>`.text,
          );
        }
      } finally {
        out.end(PAGE_END);
      }
    })();
    return reply.type('text/html; charset=utf-8').send(out);
  });

  app.get('/report', { onRequest: investigator }, async (req, reply) => send(reply, reportFormPage(await ctx(req, reply), null, null)));
  const reportOf = async (req: FastifyRequest, reply: FastifyReply, c: PageContext): Promise<Query | null> => {
    try {
      return reportQueryFrom(req.body as FormBody);
    } catch (err) {
      if (err instanceof FormError) {
        await send(reply, reportFormPage(c, err.message, null), 400);
        return null;
      }
      throw err;
    }
  };
  const collect = async (reply: FastifyReply, q: Query) => {
    const events: Found[] = [];
    let total = 0;
    const { report, summary } = await searchAll(
      o.archive,
      q,
      (f) => {
        total++;
        if (events.length < REPORT_ROWS) events.push(f);
      },
      { signal: abortOnClose(reply) },
    );
    // What this very search verified: the newest signed digest it walked (not the status page's last run).
    return { events, total, truncated: total > events.length, summary, head: report.throughHead, report, madeAt: now().toISOString() };
  };
  const reportRoute = (path: string, kind: 'html' | 'pdf') =>
    app.post(path, { onRequest: investigator, preHandler: app.csrfProtection }, async (req, reply) => {
      const c = await ctx(req, reply);
      const q = await reportOf(req, reply, c);
      if (!q) return reply;
      const r = await collect(reply, q);
      await o.recorder.record('CONSOLE REPORT', c.viewer!.name, q.customer, { question: describe(q), query: q, format: kind, results: r.total, head: r.head });
      if (kind === 'html') return send(reply, reportPage(c, q, { ...r, by: c.viewer!.name }));
      const pdf = await reportPdf(q, { ...r, by: c.viewer!.name });
      return reply.type('application/pdf').header('content-disposition', 'attachment; filename="access-report.pdf"').send(pdf);
    });
  reportRoute('/report', 'html');
  reportRoute('/report.pdf', 'pdf');
  app.post('/report.csv', { onRequest: investigator, preHandler: app.csrfProtection }, async (req, reply) => {
    const c = await ctx(req, reply);
    const q = await reportOf(req, reply, c);
    if (!q) return reply;
    // The same columns as `query --format csv`, every access (no row limit): written to a file first,
    // so the count is recorded before anything is sent, and memory does not grow with the answer.
    const csv = await csvFile(o.archive, q, { signal: abortOnClose(reply) });
    const recorded = o.recorder.record('CONSOLE REPORT', c.viewer!.name, q.customer, { question: describe(q), query: q, format: 'csv', results: csv.events });
    return sendRecorded(reply, csv, recorded, 'text/csv; charset=utf-8', 'access-report.csv');
  });

  app.post('/evidence.zip', { onRequest: investigator, preHandler: app.csrfProtection }, async (req, reply) => {
    const c = await ctx(req, reply);
    let q: Query;
    try {
      q = queryFrom(req.body as FormBody);
    } catch (err) {
      if (err instanceof FormError) return send(reply, searchPage(c, null, err.message), 400);
      throw err;
    }
    const zip = await evidenceZip(o.archive, q, `pg-audit-shipper console, ${c.viewer!.name}`, { signal: abortOnClose(reply) });
    const recorded = o.recorder.record('CONSOLE EVIDENCE', c.viewer!.name, q.customer, { question: describe(q), query: q, results: zip.events });
    return sendRecorded(reply, zip, recorded, 'application/zip', 'evidence.zip');
  });

  app.post('/acknowledge', { onRequest: investigator, preHandler: app.csrfProtection }, async (req, reply) => {
    const b = req.body as FormBody;
    const c = await ctx(req, reply);
    const finding = one(b, 'finding');
    const reason = one(b, 'reason');
    if (!/^record:[1-9]\d*$/.test(finding) || reason.length < 10) {
      return send(
        reply,
        messagePage(c, 'Not acknowledged', 'Give the finding id and a reason of at least 10 characters: the reason is archived with the acknowledgement.'),
        400,
      );
    }
    const id = await o.recorder.acknowledge(finding, reason, c.viewer!.name);
    return send(
      reply,
      messagePage(
        c,
        'Acknowledged',
        `${finding} is acknowledged as audit event ${id}. Once it is shipped, the next verification reports the finding as acknowledged.`,
        'info',
      ),
    );
  });

  app.setNotFoundHandler(async (req, reply) => send(reply, layout(await ctx(req, reply), 'Not found', html`<p>There is no such page.</p>`), 404));
  return { app, keeper };
}

/**
 * A download made on disk, sent once its use is recorded, then removed (also when the person leaves
 * before it is all sent); not sent at all, and removed, when the use could not be recorded.
 */
async function sendRecorded(reply: FastifyReply, file: Download, recorded: Promise<void>, type: string, name: string): Promise<FastifyReply> {
  try {
    await recorded;
  } catch (err) {
    await file.remove();
    throw err;
  }
  reply.raw.once('close', () => void file.remove());
  return reply.type(type).header('content-disposition', `attachment; filename="${name}"`).send(createReadStream(file.path));
}

/** Aborts when the person closes the page: a search over years stops reading instead of finishing for nobody. */
function abortOnClose(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac.signal;
}
