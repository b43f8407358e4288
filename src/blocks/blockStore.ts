import { decodeBlock, decodeFullCommitQC, encodeBlock, encodeFullCommitQC } from '../domain/codecs.ts';
import { globalRangeOf } from '../domain/committee.ts';
import { hashBlockHeader } from '../domain/crypto.ts';
import type { Block, FullCommitQC, GlobalRange, Hash } from '../domain/types.ts';
import { bytesEqual, toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import type { Lookup, RecordStore } from '../records/recordStore.ts';

/** Record kinds of the block store inside the record layer. */
export const BlockRecordKind = { block: 1, commitQC: 2 } as const;
/** Record-layer kind declarations of the block store (pass to `RecordStore.open`). */
export const BLOCK_STORE_KINDS = {
  rangedKinds: [BlockRecordKind.commitQC] as readonly number[],
  pointKinds: [BlockRecordKind.block] as readonly number[],
};

/** Tri-state read result: present, never written (or not yet), or below the prune floor. */
export type ReadResult<T> =
  | { status: 'found'; value: T }
  | { status: 'absent' }
  | { status: 'pruned'; floor: number };

export interface BlockRanges {
  /** Readable blocks: [first, next). Empty (first == next) when there are none. */
  blocks: GlobalRange;
  /** Readable FullCommitQCs, as the global range they cover together. */
  qcs: GlobalRange;
  /** Every number below it reads as pruned. */
  floor: number;
}

export type WriteOutcome = 'written' | 'duplicate';

/**
 * The typed block store: finalized global blocks and their FullCommitQCs, on the record layer.
 * It owns the rules:
 *  - QCs are contiguous: each starts where the previous one ended ([first, next) convention). The
 *    first QC of an empty store may start anywhere.
 *  - a block is written only at the next dense global number, only when a stored QC covers it, and
 *    only if its header hash equals the QC's header for that number;
 *  - an identical rewrite is a no-op ('duplicate'); a different one is a CONFLICT;
 *  - validation and cursor advance are synchronous, so interleaved async callers cannot reorder
 *    the log, and the log's write order makes "no block without its QC" hold after any crash.
 *
 * Writes are visible at once and durable after `flush()`. Reads never block.
 */
export class BlockStore {
  /** First number covered by the oldest retained QC (undefined: no QC yet). */
  private qcFirst: number | undefined;
  private qcNext: number | undefined;
  private blockFirst: number | undefined;
  private blockNext: number | undefined;
  /** Header hashes of the QC the writer is filling (saves a log read + decode per block). */
  private cohort: { first: number; next: number; hashes: Hash[] } | undefined;

  private constructor(private readonly records: RecordStore) {}

  /** Wraps an opened record layer and checks the invariants a crash must never break. */
  static open(records: RecordStore): BlockStore {
    const store = new BlockStore(records);
    store.recoverCursors();
    return store;
  }

  get name(): string {
    return this.records.name;
  }

  get floor(): number {
    return this.records.floor;
  }

  /** Appends a FullCommitQC. Throws INVALID_ARGUMENT, OUT_OF_ORDER, CONFLICT or PRUNED. */
  writeQC(full: FullCommitQC): WriteOutcome {
    const range = globalRangeOf(full.qc);
    if (range.next <= range.first) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `CommitQC ${full.qc.roadIndex} covers no block ([${range.first}, ${range.next}))`,
      );
    }
    if (full.headers.length !== range.next - range.first) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `FullCommitQC ${full.qc.roadIndex}: ${full.headers.length} headers for range [${range.first}, ${range.next})`,
      );
    }
    const value = encodeFullCommitQC(full);
    if (this.qcNext !== undefined) {
      if (range.first < this.qcNext) return this.compareExistingQC(range, value);
      if (range.first > this.qcNext) {
        throw new CairnError(
          'OUT_OF_ORDER',
          `CommitQC ${full.qc.roadIndex} starts at ${range.first}, but the stored QCs end at ${this.qcNext}; ` +
            `QCs must be contiguous`,
          { details: { reason: 'qc-not-contiguous', first: range.first, expected: this.qcNext } },
        );
      }
    }
    this.records.append(BlockRecordKind.commitQC, range.first, range.next, value);
    this.qcNext = range.next;
    this.qcFirst ??= range.first;
    this.blockFirst ??= range.first;
    this.blockNext ??= range.first;
    return 'written';
  }

  /** Appends block `n`. Throws OUT_OF_ORDER (gap, or no QC covers n), CONFLICT or PRUNED. */
  writeBlock(n: number, block: Block): WriteOutcome {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new CairnError('INVALID_ARGUMENT', `block number must be a non-negative safe integer, got ${n}`);
    }
    if (this.qcNext === undefined || n >= this.qcNext || this.blockNext === undefined) {
      const covered =
        this.qcNext === undefined ? 'no QC is stored' : `stored QCs cover [${this.qcFirst}, ${this.qcNext})`;
      throw new CairnError('OUT_OF_ORDER', `block ${n} has no covering QC: ${covered}`, {
        details: { reason: 'missing-qc', number: n },
      });
    }
    const hash = hashBlockHeader(block.header);
    if (n < this.blockNext) return this.compareExistingBlock(n, block, hash);
    if (n > this.blockNext) {
      throw new CairnError(
        'OUT_OF_ORDER',
        `block ${n} skips ahead: the next block to write is ${this.blockNext}`,
        {
          details: { reason: 'gap', number: n, expected: this.blockNext },
        },
      );
    }
    const expected = this.qcHeaderHash(n);
    if (!bytesEqual(expected, hash)) {
      throw new CairnError(
        'CONFLICT',
        `block ${n} has header hash ${toHex(hash).slice(0, 16)}…, but its QC finalizes ${toHex(expected).slice(0, 16)}…`,
        { details: { number: n } },
      );
    }
    this.records.append(BlockRecordKind.block, n, n + 1, encodeBlock(block), hash);
    this.blockNext = n + 1;
    return 'written';
  }

  /** Resolves when everything written before the call is durable. */
  flush(): Promise<void> {
    return this.records.flush();
  }

  readBlock(n: number): ReadResult<Block> {
    return mapLookup(this.records.get(BlockRecordKind.block, n), (v) => decodeBlock(v));
  }

  /** The block whose header hash is `hash`, with its global number. */
  readBlockByHash(hash: Uint8Array): ReadResult<{ number: number; block: Block }> {
    const found = this.records.getByHash(hash);
    if (found.status === 'found' && found.record.kind !== BlockRecordKind.block) return { status: 'absent' };
    return mapLookup(found, (v, first) => ({ number: first, block: decodeBlock(v) }));
  }

  /** The FullCommitQC whose range covers block `n` (the same QC for every n of its cohort). */
  readQCForBlock(n: number): ReadResult<FullCommitQC> {
    return mapLookup(this.records.get(BlockRecordKind.commitQC, n), (v) => decodeFullCommitQC(v));
  }

  /**
   * Bounded recovery/sync read: blocks [from, from + maxBlocks) that are stored, ascending, with
   * every QC covering them (from the QC covering `from`). Replaces a read-everything call.
   */
  readRange(
    from: number,
    maxBlocks: number,
  ): ReadResult<{ qcs: FullCommitQC[]; blocks: { number: number; block: Block }[] }> {
    if (!Number.isSafeInteger(from) || from < 0) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `readRange: from must be a non-negative safe integer, got ${from}`,
      );
    }
    if (!Number.isSafeInteger(maxBlocks) || maxBlocks <= 0 || maxBlocks > 100_000) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `maxBlocks must be an integer in [1, 100000], got ${maxBlocks}`,
      );
    }
    if (from < this.records.floor) return { status: 'pruned', floor: this.records.floor };
    const blocks: { number: number; block: Block }[] = [];
    const qcs: FullCommitQC[] = [];
    const end = Math.min(this.blockNext ?? from, from + maxBlocks);
    let covered = from;
    let prunedMeanwhile: ReadResult<never> | undefined;
    const pushQC = (n: number): boolean => {
      const q = this.readQCForBlock(n);
      if (q.status === 'pruned') prunedMeanwhile = q;
      if (q.status !== 'found') return false;
      qcs.push(q.value);
      covered = globalRangeOf(q.value.qc).next;
      return true;
    };
    // A prune running concurrently may have passed `from` since the floor check above.
    if (!pushQC(from)) return prunedMeanwhile ?? { status: 'absent' };
    for (let n = from; n < end; n++) {
      if (n >= covered && !pushQC(n)) break;
      const b = this.readBlock(n);
      if (b.status !== 'found') break;
      blocks.push({ number: n, block: b.value });
    }
    return { status: 'found', value: { qcs, blocks } };
  }

  ranges(): BlockRanges {
    const floor = this.records.floor;
    const empty = { first: floor, next: floor };
    return {
      floor,
      blocks:
        this.blockNext === undefined
          ? empty
          : { first: Math.max(floor, this.blockFirst!), next: this.blockNext },
      qcs: this.qcNext === undefined ? empty : { first: Math.max(floor, this.qcFirst!), next: this.qcNext },
    };
  }

  /**
   * Raises the floor toward `n`: capped at the newest block (the store is never emptied), rounded
   * down to the first block of the QC covering it (a cohort is kept whole), durable before any data
   * is dropped. A no-op on a store without blocks. Returns the floor in force afterwards.
   */
  async pruneBefore(n: number): Promise<number> {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new CairnError('INVALID_ARGUMENT', `prune point must be a non-negative safe integer, got ${n}`);
    }
    this.records.assertUsable();
    if (this.blockNext === undefined || this.blockFirst === undefined || this.blockNext <= this.blockFirst) {
      return this.records.floor;
    }
    const capped = Math.min(n, this.blockNext - 1);
    const span = this.records
      .spans(BlockRecordKind.commitQC)
      .find((s) => s.first <= capped && capped < s.next);
    const target = span === undefined ? capped : span.first;
    if (target > this.records.floor) {
      await this.records.pruneBefore(target);
      this.qcFirst = Math.max(this.qcFirst!, target);
      this.blockFirst = Math.max(this.blockFirst, target);
      if (this.cohort !== undefined && this.cohort.next <= target) this.cohort = undefined;
    }
    return this.records.floor;
  }

  /**
   * Full check: every record's checksum, the index agreeing with the log, QC contiguity, every
   * block decodable, matching its QC header, and dense. Returns the problems found.
   */
  async verify(): Promise<{ blocks: number; qcs: number; problems: string[] }> {
    const base = await this.records.verify();
    const problems = [...base.problems];
    const r = this.ranges();
    let qcs = 0;
    let prevNext: number | undefined;
    for (const s of this.records.spans(BlockRecordKind.commitQC)) {
      qcs++;
      if (prevNext !== undefined && s.first !== prevNext)
        problems.push(`QC gap: [${prevNext}, ${s.first}) uncovered`);
      prevNext = s.next;
    }
    let blocks = 0;
    let qc: FullCommitQC | undefined;
    let qcRange: GlobalRange | undefined;
    for (let n = r.blocks.first; n < r.blocks.next; n++) {
      try {
        const b = this.readBlock(n);
        if (b.status !== 'found') {
          problems.push(
            `block ${n}: ${b.status} inside the stored range [${r.blocks.first}, ${r.blocks.next})`,
          );
          continue;
        }
        blocks++;
        if (qcRange === undefined || n >= qcRange.next) {
          const q = this.readQCForBlock(n);
          if (q.status !== 'found') {
            problems.push(`block ${n}: no covering QC (${q.status})`);
            continue;
          }
          qc = q.value;
          qcRange = globalRangeOf(qc.qc);
        }
        const hash = hashBlockHeader(b.value.header);
        if (!bytesEqual(hash, hashBlockHeader(qc!.headers[n - qcRange.first]!))) {
          problems.push(`block ${n}: header does not match its QC`);
        }
        const byHash = this.readBlockByHash(hash);
        if (byHash.status !== 'found' || byHash.value.number !== n) {
          problems.push(
            `block ${n}: by-hash lookup gives ${byHash.status === 'found' ? byHash.value.number : byHash.status}`,
          );
        }
      } catch (err) {
        problems.push(`block ${n}: ${(err as Error).message}`);
      }
    }
    return { blocks, qcs, problems };
  }

  close(): Promise<void> {
    return this.records.close();
  }

  // ------------------------------------------------------------------ internals

  private recoverCursors(): void {
    const spans = this.records.spans(BlockRecordKind.commitQC);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]!.first !== spans[i - 1]!.next) {
        throw new CairnError(
          'GAP',
          `block store ${this.name}: stored QCs are not contiguous: [${spans[i - 1]!.first}, ${spans[i - 1]!.next}) ` +
            `is followed by [${spans[i]!.first}, ${spans[i]!.next})`,
          { details: { file: this.name } },
        );
      }
    }
    const oldestBlock = this.records.oldest(BlockRecordKind.block);
    const newestBlock = this.records.newest(BlockRecordKind.block);
    const firstQC = spans[0];
    const lastQC = spans[spans.length - 1];
    if (firstQC === undefined || lastQC === undefined) {
      if (oldestBlock !== undefined) {
        throw new CairnError(
          'CORRUPT',
          `block store ${this.name}: holds blocks from ${oldestBlock.first} but no QC; refusing to open`,
          { details: { file: this.name } },
        );
      }
      return;
    }
    this.qcFirst = firstQC.first;
    this.qcNext = lastQC.next;
    const start = Math.max(firstQC.first, this.records.floor);
    this.blockFirst = start;
    this.blockNext = start;
    if (oldestBlock !== undefined && newestBlock !== undefined && newestBlock.next > start) {
      if (oldestBlock.first !== start) {
        throw new CairnError(
          'GAP',
          `block store ${this.name}: blocks start at ${oldestBlock.first}, but the retained QCs start at ${start}`,
          { details: { file: this.name } },
        );
      }
      if (newestBlock.next > this.qcNext) {
        throw new CairnError(
          'CORRUPT',
          `block store ${this.name}: block ${newestBlock.first} lies beyond the stored QCs (which end at ${this.qcNext})`,
          { details: { file: this.name } },
        );
      }
      this.blockNext = newestBlock.next;
      // Dense blocks: the newest must be readable and so must the oldest; a hole in between is
      // found by verify() (checking every number here would make open O(retained blocks)).
    }
  }

  private qcHeaderHash(n: number): Hash {
    if (this.cohort === undefined || n < this.cohort.first || n >= this.cohort.next) {
      const q = this.readQCForBlock(n);
      if (q.status !== 'found') {
        throw new CairnError('OUT_OF_ORDER', `block ${n} has no readable covering QC (${q.status})`, {
          details: { reason: 'missing-qc', number: n },
        });
      }
      const range = globalRangeOf(q.value.qc);
      this.cohort = { first: range.first, next: range.next, hashes: q.value.headers.map(hashBlockHeader) };
    }
    return this.cohort.hashes[n - this.cohort.first]!;
  }

  private compareExistingQC(range: GlobalRange, value: Uint8Array): WriteOutcome {
    const existing = this.records.get(BlockRecordKind.commitQC, range.first);
    if (existing.status === 'pruned') {
      throw new CairnError(
        'PRUNED',
        `CommitQC at ${range.first} is below the prune floor ${existing.floor}`,
        {
          details: { floor: existing.floor, first: range.first },
        },
      );
    }
    if (
      existing.status === 'found' &&
      existing.record.first === range.first &&
      existing.record.next === range.next &&
      bytesEqual(existing.record.value, value)
    ) {
      return 'duplicate';
    }
    throw new CairnError(
      'CONFLICT',
      `CommitQC for [${range.first}, ${range.next}) differs from the stored QC covering ${range.first}`,
      { details: { first: range.first, next: range.next } },
    );
  }

  private compareExistingBlock(n: number, block: Block, hash: Hash): WriteOutcome {
    const existing = this.records.get(BlockRecordKind.block, n);
    if (existing.status === 'pruned') {
      throw new CairnError('PRUNED', `block ${n} is below the prune floor ${existing.floor}`, {
        details: { floor: existing.floor, number: n },
      });
    }
    if (existing.status === 'found' && bytesEqual(existing.record.hash, hash)) {
      if (bytesEqual(existing.record.value, encodeBlock(block))) return 'duplicate';
    }
    throw new CairnError('CONFLICT', `block ${n} differs from the stored block ${n}`, {
      details: { number: n },
    });
  }
}

function mapLookup<T>(found: Lookup, decode: (value: Uint8Array, first: number) => T): ReadResult<T> {
  if (found.status === 'found')
    return { status: 'found', value: decode(found.record.value, found.record.first) };
  return found;
}
