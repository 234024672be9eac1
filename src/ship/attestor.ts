import type { Logger } from '../log.js';
import { attestation, type Attestation, type CaptureConfig } from '../capture/attest.js';

export interface AttestorIo {
  read(): Promise<CaptureConfig>;
  append(a: Attestation): Promise<string>;
}

export interface AttestorOptions {
  /** an attestation at least this often (the heartbeat interval): verify reports a longer stretch without one */
  intervalMs: number;
  log: Logger;
  /** failing (a message) or recovered (null): /readyz reports it */
  onProblem?: (problem: string | null) => void;
  now?: () => number;
}

/**
 * Decides when the capture configuration is attested in the trail: at the first check, whenever it
 * differs from the last one appended, and when the last one is `intervalMs` old. The caller decides
 * how often to check (each check is one catalog query, ~15 ms on a 3-table database).
 */
export class Attestor {
  private lastSha: string | null = null;
  private lastAt = 0;
  private failing = false;

  constructor(
    private readonly io: AttestorIo,
    private readonly opts: AttestorOptions,
  ) {}

  /** One check; returns the appended attestation's audit_log id, or null when none was due. Throws what the I/O threw. */
  async check(): Promise<string | null> {
    const now = (this.opts.now ?? Date.now)();
    const a = attestation(await this.io.read(), Math.round(this.opts.intervalMs / 1000));
    const changed = this.lastSha !== null && a.config_sha256 !== this.lastSha;
    if (this.lastSha !== null && !changed && now - this.lastAt < this.opts.intervalMs) return null;
    const id = await this.io.append(a);
    if (changed) this.opts.log.warn({ audit_log_id: id, config_sha256: a.config_sha256 }, 'the capture configuration changed; attested in the trail');
    else this.opts.log.debug({ audit_log_id: id, config_sha256: a.config_sha256 }, 'capture configuration attested');
    this.lastSha = a.config_sha256;
    this.lastAt = now;
    return id;
  }

  /** check(), with a failure logged and reported instead of thrown: the next check tries again. */
  async checkQuietly(): Promise<void> {
    try {
      await this.check();
      if (this.failing) {
        this.failing = false;
        this.opts.log.warn('attesting the capture configuration works again');
        this.opts.onProblem?.(null);
      }
    } catch (err) {
      this.failing = true;
      const message = (err as Error).message;
      this.opts.log.error({ err: message }, 'could not attest the capture configuration; trying again at the next check');
      this.opts.onProblem?.(`failed: ${message}`);
    }
  }
}
