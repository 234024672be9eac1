// How an attestation of the capture configuration is told apart in the trail (docs/format.md 3.4), in
// a leaf module: the sealer's key index lists attestations, and must not import the database side.

/** audit_log.source and .action of an attestation record */
export const ATTEST_SOURCE = 'attest';
export const ATTEST_ACTION = 'ATTESTATION';
