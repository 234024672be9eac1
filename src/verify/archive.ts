import type { ArchiveReader } from '../sink/sink.js';
import { verifyChain, type ChainOptions, type ChainReport } from './chain.js';
import type { Acknowledged, Finding } from './findings.js';
import { checkInventory } from './inventory.js';

export interface ArchiveVerdict {
  chain: ChainReport;
  /** open problems: any makes the archive fail */
  findings: Finding[];
  /** tamper and gap records a reviewer acknowledged through the chain */
  acknowledged: Acknowledged[];
  notes: Finding[];
}

/**
 * Everything that can be proven from the archive's objects and the verify keys alone: the chain of
 * digests and records, every rule of docs/format.md, the inventory, and what the chain records as
 * wrong. What needs the outside world (the head's age by a clock, the storage's locks, the head the
 * database remembers) is added by the `verify` command. The conformance corpus is judged by this.
 */
export async function verifyArchive(reader: ArchiveReader, opts: ChainOptions): Promise<ArchiveVerdict> {
  const chain = await verifyChain(reader, opts);
  const inventory = await checkInventory(reader, chain);
  return {
    chain,
    findings: [...chain.findings, ...chain.recorded.open, ...chain.receipts.findings, ...inventory.findings],
    acknowledged: chain.recorded.acknowledged,
    notes: [...chain.recorded.notes, ...chain.receipts.notes, ...inventory.notes],
  };
}
