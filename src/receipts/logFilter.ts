import { bytesEqual, toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import type { LogFilter, LogInput } from './types.ts';

/** A validated filter with a resolved block range and hex-keyed sets for matching. */
export interface NormalizedFilter {
  fromBlock: number;
  toBlock: number;
  /** Undefined: any address. */
  addresses: Uint8Array[] | undefined;
  addressSet: Set<string> | undefined;
  /** Position i: undefined is a wildcard, otherwise an OR list. Trailing wildcards are dropped. */
  topics: (Uint8Array[] | undefined)[];
  topicSets: (Set<string> | undefined)[];
}

export const MAX_FILTER_ADDRESSES = 1000;
export const MAX_FILTER_TOPICS_PER_POSITION = 1000;

function invalid(message: string): CairnError {
  return new CairnError('INVALID_ARGUMENT', message);
}

/**
 * Validates `filter`'s addresses and topics (caller errors name the bad entry) and combines them
 * with an already resolved range. Exactly four topic positions exist; a fifth is an error (the
 * reference silently ignored it in one path and rejected the log in another).
 */
export function normalizeFilter(filter: LogFilter, fromBlock: number, toBlock: number): NormalizedFilter {
  let addresses: Uint8Array[] | undefined;
  if (filter.addresses !== undefined && filter.addresses.length > 0) {
    if (filter.addresses.length > MAX_FILTER_ADDRESSES) {
      throw invalid(`filter has ${filter.addresses.length} addresses (max ${MAX_FILTER_ADDRESSES})`);
    }
    for (const a of filter.addresses) {
      if (!(a instanceof Uint8Array) || a.length !== 20) throw invalid('filter address must be 20 bytes');
    }
    addresses = [...filter.addresses];
  }
  const topics: (Uint8Array[] | undefined)[] = [];
  const raw = filter.topics ?? [];
  if (raw.length > 4) throw invalid(`filter has ${raw.length} topic positions (max 4)`);
  for (let i = 0; i < raw.length; i++) {
    const pos = raw[i];
    // geth decodes a null inside an OR list ([[A, null]]) as "any value" for the whole position.
    if (pos === null || pos === undefined || pos.length === 0 || pos.includes(null)) {
      topics.push(undefined);
      continue;
    }
    if (pos.length > MAX_FILTER_TOPICS_PER_POSITION) {
      throw invalid(
        `filter topic position ${i} has ${pos.length} values (max ${MAX_FILTER_TOPICS_PER_POSITION})`,
      );
    }
    for (const t of pos) {
      if (!(t instanceof Uint8Array) || t.length !== 32) throw invalid(`filter topic ${i} must be 32 bytes`);
    }
    topics.push([...(pos as readonly Uint8Array[])]);
  }
  while (topics.length > 0 && topics[topics.length - 1] === undefined) topics.pop();
  return {
    fromBlock,
    toBlock,
    addresses,
    addressSet: addresses ? new Set(addresses.map(toHex)) : undefined,
    topics,
    topicSets: topics.map((p) => (p ? new Set(p.map(toHex)) : undefined)),
  };
}

/** eth_getLogs matching of one log (the block range is checked by the caller). */
export function logMatches(f: NormalizedFilter, log: LogInput): boolean {
  if (f.addresses) {
    let hit = false;
    for (const a of f.addresses) {
      if (bytesEqual(a, log.address)) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
  }
  for (let i = 0; i < f.topics.length; i++) {
    const want = f.topics[i];
    if (want === undefined) continue;
    const have = log.topics[i];
    if (have === undefined) return false;
    let hit = false;
    for (const t of want) {
      if (bytesEqual(t, have)) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
  }
  return true;
}

/** Rough in-memory size of a returned log, for the byte budget. */
export function logBytes(log: LogInput): number {
  return 20 + 32 * log.topics.length + log.data.length + 32 + 32 + 64;
}
