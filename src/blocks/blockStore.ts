import { decodeBlock, decodeFullCommitQC, encodeBlock, encodeFullCommitQC } from '../domain/codecs.ts';
import { globalRangeOf, headersMismatch, verifyCommitQC } from '../domain/committee.ts';
import { hashBlockHeader } from '../domain/crypto.ts';
import type { Block, Committee, FullCommitQC, GlobalRange, Hash } from '../domain/types.ts';
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
  /** DURABLE blocks: [first, next), flushed (fsynced). Empty (first == next) when there are none. */
  blocks: GlobalRange;
  /** DURABLE FullCommitQCs, as the global range they cover together. */
  qcs: GlobalRange;
  /** Every number below it reads as pruned. */
  floor: number;
  /**
   * The written tip: what `writeQC`/`writeBlock` accepted, readable at once but durable only after
   * the next `flush()`. Never use it to acknowledge anything.
   */
  written: { blocksNext: number; qcsNext: number };
}

export type WriteOutcome = 'written' | 'duplicate';

export interface WriteBatch {
  /** Contiguous FullCommitQCs, oldest first (already stored ones are accepted as duplicates). */
  qcs: readonly FullCommitQC[];
  /** Blocks in ascending global number, each covered by a stored or batched QC. */
  blocks: readonly { number: number; block: Block }[];
}

export interface BlockStoreOptions {
  /**
   * The committee whose CommitQCs the store accepts: with it, every QC is verified (lanes, quorum,
   * and signatures unless `verifySignatures` is false) before it is stored. Without it only the
   * committee-free checks run: the headers must be exactly the ones the QC's lane ranges finalize.
   */
  committee?: Committee | undefined;
  /** Verify the quorum's signatures (default true; only with `committee`). */
  verifySignatures?: boolean | undefined;
}

/** One validated append, computed before anything of a batch is written. */
type PlannedAppend =
  | { kind: 'qc'; range: GlobalRange; value: Uint8Array; hashes: Hash[] }
  | { kind: 'block'; number: number; value: Uint8Array; hash: Hash };

interface Cursors {
  qcFirst: number | undefined;
  qcNext: number | undefined;
  blockFirst: number | undefined;
  blockNext: number | undefined;
}

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
  /** Durable tips: everything below them was covered by a completed flush (or recovered at open). */
  private durableBlockNext: number | undefined;
  private durableQcNext: number | undefined;

  private constructor(
    private readonly records: RecordStore,
    private readonly options: BlockStoreOptions,
  ) {}

  /** Wraps an opened record layer and checks the invariants a crash must never break. */
  static open(records: RecordStore, options: BlockStoreOptions = {}): BlockStore {
    const store = new BlockStore(records, options);
    store.recoverCursors();
    // Everything recovered from disk is durable.
    store.durableBlockNext = store.blockNext;
    store.durableQcNext = store.qcNext;
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
    return this.writeBatch({ qcs: [full], blocks: [] }).qcs[0]!;
  }

  /** Appends block `n`. Throws OUT_OF_ORDER (gap, or no QC covers n), CONFLICT or PRUNED. */
  writeBlock(n: number, block: Block): WriteOutcome {
    return this.writeBatch({ qcs: [], blocks: [{ number: n, block }] }).blocks[0]!;
  }

  /**
   * Appends QCs, then blocks, all or nothing: every entry is validated against the store and the
   * entries before it in the batch first, and only a batch without a single refused entry is
   * appended (a caller error leaves the store exactly as it was). Visible at once, durable after
   * `flush()`.
   */
  writeBatch(batch: WriteBatch): { qcs: WriteOutcome[]; blocks: WriteOutcome[] } {
    this.records.assertUsable();
    const cursors: Cursors = {
      qcFirst: this.qcFirst,
      qcNext: this.qcNext,
      blockFirst: this.blockFirst,
      blockNext: this.blockNext,
    };
    const planned: PlannedAppend[] = [];
    const batchCohorts: { first: number; next: number; hashes: Hash[] }[] = [];
    const qcs = batch.qcs.map((full) => this.planQC(full, cursors, planned, batchCohorts));
    const blocks = batch.blocks.map(({ number, block }) =>
      this.planBlock(number, block, cursors, planned, batchCohorts),
    );
    for (const step of planned) {
      if (step.kind === 'qc') {
        this.records.append(BlockRecordKind.commitQC, step.range.first, step.range.next, step.value);
      } else {
        this.records.append(BlockRecordKind.block, step.number, step.number + 1, step.value, step.hash);
      }
    }
    this.qcFirst = cursors.qcFirst;
    this.qcNext = cursors.qcNext;
    this.blockFirst = cursors.blockFirst;
    this.blockNext = cursors.blockNext;
    const lastCohort = batchCohorts[batchCohorts.length - 1];
    if (lastCohort !== undefined) this.cohort = lastCohort;
    return { qcs, blocks };
  }

  /** Resolves when everything written before the call is durable. */
  async flush(): Promise<void> {
    const blocksNext = this.blockNext;
    const qcsNext = this.qcNext;
    await this.records.flush();
    this.markDurable(blocksNext, qcsNext);
  }

  readBlock(n: number): ReadResult<Block> {
    const found = this.records.get(BlockRecordKind.block, n);
    if (found.status === 'absent') this.checkAbsent('block', n, this.blockFirst, this.blockNext);
    return mapLookup(found, (v) => decodeBlock(v));
  }

  /** The block whose header hash is `hash`, with its global number. */
  readBlockByHash(hash: Uint8Array): ReadResult<{ number: number; block: Block }> {
    const found = this.records.getByHash(hash);
    if (found.status === 'found' && found.record.kind !== BlockRecordKind.block) return { status: 'absent' };
    return mapLookup(found, (v, first) => ({ number: first, block: decodeBlock(v) }));
  }

  /** The FullCommitQC whose range covers block `n` (the same QC for every n of its cohort). */
  readQCForBlock(n: number): ReadResult<FullCommitQC> {
    const found = this.records.get(BlockRecordKind.commitQC, n);
    if (found.status === 'absent') this.checkAbsent('CommitQC covering', n, this.qcFirst, this.qcNext);
    return mapLookup(found, (v) => decodeFullCommitQC(v));
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
    const span = (first: number | undefined, next: number | undefined): GlobalRange => {
      if (first === undefined || next === undefined) return { first: floor, next: floor };
      const from = Math.max(floor, first);
      return { first: from, next: Math.max(from, next) };
    };
    return {
      floor,
      blocks: span(this.blockFirst, this.durableBlockNext),
      qcs: span(this.qcFirst, this.durableQcNext),
      written: {
        blocksNext: Math.max(floor, this.blockNext ?? floor),
        qcsNext: Math.max(floor, this.qcNext ?? floor),
      },
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
    const covering = this.records.locate(BlockRecordKind.commitQC, capped);
    const target = covering === undefined ? capped : covering.first;
    if (target > this.records.floor) {
      const blocksNext = this.blockNext;
      const qcsNext = this.qcNext;
      await this.records.pruneBefore(target);
      // The prune flushed everything written before it.
      this.markDurable(blocksNext, qcsNext);
      this.qcFirst = Math.max(this.qcFirst!, target);
      this.blockFirst = Math.max(this.blockFirst, target);
      if (this.cohort !== undefined && this.cohort.next <= target) this.cohort = undefined;
    }
    return this.records.floor;
  }

  /**
   * Full check: every record's checksum, the index agreeing with the log, QC contiguity, every
   * block decodable, matching its QC header, and dense. Returns the problems found. Reads the QCs
   * one at a time through the index (bounded memory).
   */
  async verify(): Promise<{ blocks: number; qcs: number; problems: string[] }> {
    const base = await this.records.verify();
    const problems = [...base.problems];
    const floor = this.records.floor;
    let qcs = 0;
    if (this.qcFirst !== undefined && this.qcNext !== undefined) {
      let n = Math.max(floor, this.qcFirst);
      while (n < this.qcNext) {
        let found: Lookup;
        try {
          found = this.records.get(BlockRecordKind.commitQC, n);
        } catch (err) {
          problems.push(`QC covering ${n}: ${(err as Error).message}`);
          break;
        }
        if (found.status !== 'found') {
          problems.push(
            `QC gap: no QC covers ${n} inside [${this.qcFirst}, ${this.qcNext}) (${found.status})`,
          );
          break;
        }
        qcs++;
        n = found.record.next;
      }
    }
    let blocks = 0;
    let qc: FullCommitQC | undefined;
    let qcRange: GlobalRange | undefined;
    const first = Math.max(floor, this.blockFirst ?? floor);
    const next = this.blockNext ?? floor;
    for (let n = first; n < next; n++) {
      try {
        const b = this.readBlock(n);
        if (b.status !== 'found') {
          problems.push(`block ${n}: ${b.status} inside the stored range [${first}, ${next})`);
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

  private planQC(
    full: FullCommitQC,
    cursors: Cursors,
    planned: PlannedAppend[],
    batchCohorts: { first: number; next: number; hashes: Hash[] }[],
  ): WriteOutcome {
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
    if (this.options.committee !== undefined) {
      verifyCommitQC(full.qc, this.options.committee, { signatures: this.options.verifySignatures ?? true });
    }
    // The headers must be the ones the signed lane ranges finalize: a node that holds another
    // block a lane owner signed at the same height would otherwise store it as final.
    const hashes = full.headers.map(hashBlockHeader);
    const mismatch = headersMismatch(full, hashes);
    if (mismatch !== undefined) {
      throw new CairnError('CONFLICT', `${mismatch}: the headers are not the blocks the quorum finalized`, {
        details: { reason: 'qc-headers-mismatch', roadIndex: full.qc.roadIndex, first: range.first },
      });
    }
    const value = encodeFullCommitQC(full);
    this.checkValueSize(value, `FullCommitQC ${full.qc.roadIndex}`);
    if (cursors.qcNext !== undefined) {
      if (range.first < cursors.qcNext) {
        const earlier = planned.find((p) => p.kind === 'qc' && p.range.first === range.first);
        if (earlier !== undefined && earlier.kind === 'qc') {
          if (earlier.range.next === range.next && bytesEqual(earlier.value, value)) return 'duplicate';
          throw new CairnError(
            'CONFLICT',
            `CommitQC for [${range.first}, ${range.next}) differs from the one earlier in the batch`,
            { details: { first: range.first, next: range.next } },
          );
        }
        return this.compareExistingQC(range, value);
      }
      if (range.first > cursors.qcNext) {
        throw new CairnError(
          'OUT_OF_ORDER',
          `CommitQC ${full.qc.roadIndex} starts at ${range.first}, but the stored QCs end at ${cursors.qcNext}; ` +
            `QCs must be contiguous`,
          { details: { reason: 'qc-not-contiguous', first: range.first, expected: cursors.qcNext } },
        );
      }
    }
    planned.push({ kind: 'qc', range, value, hashes });
    batchCohorts.push({ first: range.first, next: range.next, hashes });
    cursors.qcNext = range.next;
    cursors.qcFirst ??= range.first;
    cursors.blockFirst ??= range.first;
    cursors.blockNext ??= range.first;
    return 'written';
  }

  private planBlock(
    n: number,
    block: Block,
    cursors: Cursors,
    planned: PlannedAppend[],
    batchCohorts: readonly { first: number; next: number; hashes: Hash[] }[],
  ): WriteOutcome {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new CairnError('INVALID_ARGUMENT', `block number must be a non-negative safe integer, got ${n}`);
    }
    if (cursors.qcNext === undefined || n >= cursors.qcNext || cursors.blockNext === undefined) {
      const covered =
        cursors.qcNext === undefined
          ? 'no QC is stored'
          : `stored QCs cover [${cursors.qcFirst}, ${cursors.qcNext})`;
      throw new CairnError('OUT_OF_ORDER', `block ${n} has no covering QC: ${covered}`, {
        details: { reason: 'missing-qc', number: n },
      });
    }
    const hash = hashBlockHeader(block.header);
    if (n < cursors.blockNext) {
      const earlier = planned.find((p) => p.kind === 'block' && p.number === n);
      if (earlier !== undefined && earlier.kind === 'block') {
        if (bytesEqual(earlier.hash, hash) && bytesEqual(earlier.value, encodeBlock(block)))
          return 'duplicate';
        throw new CairnError('CONFLICT', `block ${n} differs from block ${n} earlier in the batch`, {
          details: { number: n },
        });
      }
      return this.compareExistingBlock(n, block, hash);
    }
    if (n > cursors.blockNext) {
      throw new CairnError(
        'OUT_OF_ORDER',
        `block ${n} skips ahead: the next block to write is ${cursors.blockNext}`,
        {
          details: { reason: 'gap', number: n, expected: cursors.blockNext },
        },
      );
    }
    const cohort = batchCohorts.find((c) => c.first <= n && n < c.next);
    const expected = cohort !== undefined ? cohort.hashes[n - cohort.first]! : this.qcHeaderHash(n);
    if (!bytesEqual(expected, hash)) {
      throw new CairnError(
        'CONFLICT',
        `block ${n} has header hash ${toHex(hash).slice(0, 16)}…, but its QC finalizes ${toHex(expected).slice(0, 16)}…`,
        { details: { reason: 'not-the-finalized-block', number: n } },
      );
    }
    const value = encodeBlock(block);
    this.checkValueSize(value, `block ${n}`);
    planned.push({ kind: 'block', number: n, value, hash });
    cursors.blockNext = n + 1;
    return 'written';
  }

  private checkValueSize(value: Uint8Array, what: string): void {
    if (value.byteLength > this.records.maxValueBytes) {
      throw new CairnError(
        'RECORD_TOO_LARGE',
        `${what} encodes to ${value.byteLength} bytes, above the limit of ${this.records.maxValueBytes}`,
      );
    }
  }

  private markDurable(blocksNext: number | undefined, qcsNext: number | undefined): void {
    if (blocksNext !== undefined) this.durableBlockNext = Math.max(this.durableBlockNext ?? 0, blocksNext);
    if (qcsNext !== undefined) this.durableQcNext = Math.max(this.durableQcNext ?? 0, qcsNext);
  }

  /**
   * `absent` for a number inside the range the store holds is not an answer: the index lost an
   * entry (damaged engine files, a lost batch the open-time checks missed). Typed, and tells the
   * operator how to rebuild the index from the value log.
   */
  private checkAbsent(what: string, n: number, first: number | undefined, next: number | undefined): void {
    if (first === undefined || next === undefined) return;
    if (n < Math.max(first, this.records.floor) || n >= next) return;
    throw new CairnError(
      'CORRUPT',
      `block store ${this.name}: the index has no ${what} ${n}, inside the stored range [${first}, ${next}); ` +
        `the index is damaged: stop the node and run \`cairn blocks reindex --data-dir <dir>\``,
      { details: { file: this.name, number: n, reason: 'index-missing-entry' } },
    );
  }

  private recoverCursors(): void {
    const oldestQC = this.records.oldest(BlockRecordKind.commitQC);
    const newestQC = this.records.newest(BlockRecordKind.commitQC);
    const oldestBlock = this.records.oldest(BlockRecordKind.block);
    const newestBlock = this.records.newest(BlockRecordKind.block);
    if (oldestQC === undefined || newestQC === undefined) {
      if (oldestBlock !== undefined) {
        throw new CairnError(
          'CORRUPT',
          `block store ${this.name}: holds blocks from ${oldestBlock.first} but no QC; refusing to open`,
          { details: { file: this.name } },
        );
      }
      return;
    }
    this.qcFirst = oldestQC.first;
    this.qcNext = newestQC.next;
    const start = Math.max(oldestQC.first, this.records.floor);
    this.blockFirst = start;
    this.blockNext = start;
    if (oldestBlock !== undefined && newestBlock !== undefined && newestBlock.next > start) {
      if (oldestBlock.first !== start) {
        throw new CairnError(
          'GAP',
          `block store ${this.name}: blocks start at ${oldestBlock.first}, but the retained QCs start at ${start}; ` +
            'if the value log is intact the index is damaged: `cairn blocks reindex --data-dir <dir>`',
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
      // Dense blocks and contiguous QCs: the record layer re-indexed everything past its synced
      // checkpoint and spot-checked the index against the log; a hole in between is found by
      // verify() or reported as CORRUPT by the read that meets it (checking every number here
      // would make open O(retained blocks)).
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
