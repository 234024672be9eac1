/** One thing wrong, said so an auditor can act on it. `where` is an archive key (or a package file). */
export interface Finding {
  code: string;
  where: string;
  message: string;
  /**
   * Findings the chain itself records (a tamper or gap record) have an id a reviewer can
   * acknowledge (`record:<seq>`, the sequence of the first record of it), and what is known of them.
   */
  id?: string;
  detail?: Record<string, unknown>;
}

/** A finding a person reviewed: the acknowledgement is an event in the chain, after the finding. */
export interface Acknowledged extends Finding {
  acknowledgement: Acknowledgement;
}

export interface Acknowledgement {
  /** the finding id it acknowledges */
  finding: string;
  /** the database role that recorded it, and the person it names (app.user_id / --reviewer) */
  by: string;
  reviewer: string | null;
  at: string;
  reason: string;
  /** the acknowledgement's own record */
  seq: number;
}
