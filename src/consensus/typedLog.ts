import { ByteWriter } from '../domain/byteCodec.ts';
import type { Codec } from '../domain/codecs.ts';
import { CairnError, describe } from '../lib/errors.ts';
import type { WriteAheadLog } from '../wal/types.ts';

const EMPTY = new Uint8Array(0);

/** A scratch encode buffer that grew past this is dropped after use (bounded idle memory). */
const SCRATCH_KEEP_BYTES = 1 << 20;

/**
 * A typed log over the domain-indexed WAL: record `i` of the WAL is the value whose own index
 * (`indexOf`) is `i` (a lane's block number, a CommitQC's road index). Because the WAL is keyed by
 * the domain index and keeps its position across `reset`, there is no offset↔domain arithmetic to
 * get wrong, and an emptied log still knows where it stands after a reopen.
 *
 * Not safe for concurrent use: one owner (a persister pipeline) serializes every call.
 */
export class TypedLog<T> {
  /** Reused encode buffer (codecs with `encodeInto`); the WAL copies records out of it at once. */
  private scratch: ByteWriter | undefined;
  /** The payload list of one-value appends (its slot is cleared after each append). */
  private readonly onePayload: Uint8Array[] = [EMPTY];

  constructor(
    /** Where the log lives (its directory); named in every error. */
    readonly location: string,
    private readonly wal: WriteAheadLog,
    private readonly codec: Codec<T>,
    private readonly indexOf: (value: T) => number,
  ) {}

  get firstIndex(): number {
    return this.wal.firstIndex;
  }
  get nextIndex(): number {
    return this.wal.nextIndex;
  }
  get count(): number {
    return this.wal.count;
  }
  get isEmpty(): boolean {
    return this.wal.count === 0;
  }
  /** Underlying log (segment inspection, lazy-pruning decisions). */
  get raw(): WriteAheadLog {
    return this.wal;
  }

  /**
   * Appends `values`, which must carry the indices `nextIndex, nextIndex + 1, ...`. Encodes all of
   * them before writing anything, so a bad value appends nothing. Not durable until `sync()`.
   */
  append(values: readonly T[]): void {
    if (values.length === 0) return;
    let expected = this.wal.nextIndex;
    for (let i = 0; i < values.length; i++) {
      const index = this.indexOf(values[i]!);
      if (index !== expected) {
        throw new CairnError(
          'OUT_OF_ORDER',
          `${this.location}: record with index ${index} appended where ${expected} is next`,
          { details: { file: this.location, index, expected } },
        );
      }
      expected++;
    }
    const payloads = this.encodeAll(values);
    try {
      this.wal.append(payloads, this.wal.nextIndex);
    } finally {
      // Drop the view of the scratch buffer (the slot stays: no reallocation).
      if (payloads === this.onePayload) payloads[0] = EMPTY;
    }
  }

  /**
   * Encodes every value before anything is written. With `encodeInto`, all of them go into one
   * reused buffer and the payloads are views of it: valid until the next call, which is enough,
   * because the WAL copies them into its own frames inside `append`.
   */
  private encodeAll(values: readonly T[]): Uint8Array[] {
    const encodeInto = this.codec.encodeInto;
    if (encodeInto === undefined) return values.map((v) => this.codec.encode(v));
    if (this.scratch === undefined) this.scratch = new ByteWriter(64 * 1024);
    const w = this.scratch.reuse();
    let payloads: Uint8Array[];
    if (values.length === 1) {
      // The common lane batch: one value, one view, and a one-slot list kept for it (the WAL reads
      // the list inside `append` and keeps nothing; `append` clears the slot).
      encodeInto(w, values[0]!);
      payloads = this.onePayload;
      payloads[0] = w.written();
    } else {
      const ends: number[] = [];
      for (let i = 0; i < values.length; i++) {
        encodeInto(w, values[i]!);
        ends.push(w.size);
      }
      const all = w.written();
      payloads = [];
      let start = 0;
      for (let i = 0; i < ends.length; i++) {
        payloads.push(all.subarray(start, ends[i]!));
        start = ends[i]!;
      }
    }
    if (payloads[0]!.buffer.byteLength > SCRATCH_KEEP_BYTES) this.scratch = undefined;
    return payloads;
  }

  /** Resolves when everything appended before the call is durable (one group-committed fsync). */
  sync(): Promise<void> {
    return this.wal.sync();
  }

  /**
   * `sync()` with a callback: `done` runs once everything appended before the call is durable, or
   * with the error. The log's callback form allocates nothing per call (the lane fast path).
   */
  syncThen(done: (err?: unknown) => void, startNow = false): void {
    if (this.wal.syncThen !== undefined) this.wal.syncThen(done, startNow);
    else this.wal.sync().then(() => done(), done);
  }

  /** Raw stored bytes of record `index` (OUT_OF_RANGE outside [firstIndex, nextIndex)). */
  readRaw(index: number): Uint8Array {
    this.checkRetained(index);
    return this.wal.read(index);
  }

  read(index: number): T {
    return this.decodeAt(index, this.readRaw(index));
  }

  private checkRetained(index: number): void {
    if (index < this.wal.firstIndex || index >= this.wal.nextIndex) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `${this.location}: index ${index} outside the retained range [${this.wal.firstIndex}, ${this.wal.nextIndex})`,
        { details: { file: this.location, index } },
      );
    }
  }

  private decodeAt(index: number, bytes: Uint8Array): T {
    let value: T;
    try {
      value = this.codec.decode(bytes);
    } catch (err) {
      throw new CairnError(
        'CORRUPT',
        `${this.location}: record ${index} is not a valid ${this.codec.name}: ${describe(err)}`,
        {
          cause: err,
          details: { file: this.location, index },
        },
      );
    }
    const own = this.indexOf(value);
    if (own !== index) {
      throw new CairnError('CORRUPT', `${this.location}: record at index ${index} carries index ${own}`, {
        details: { file: this.location, index, recordIndex: own },
      });
    }
    return value;
  }

  /**
   * Drops every record below `index` (firstIndex ≤ index ≤ nextIndex, else OUT_OF_RANGE). When a
   * record remains at `index`, `verify` sees it first and may throw to abort with nothing changed:
   * a defence in depth against a caller computing the wrong truncation point.
   */
  async truncateBefore(index: number, verify?: (value: T) => void): Promise<void> {
    if (index < this.wal.firstIndex || index > this.wal.nextIndex) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `${this.location}: truncateBefore(${index}) outside [${this.wal.firstIndex}, ${this.wal.nextIndex}]`,
        { details: { file: this.location, index } },
      );
    }
    if (index === this.wal.firstIndex) return;
    if (verify && index < this.wal.nextIndex) verify(this.read(index));
    await this.wal.truncateFront(index);
  }

  /**
   * Empties the log and positions it at `position` (default: where it is). The position is kept
   * across reopen, so the next append must carry exactly `position`. Durable on return.
   */
  async truncateAll(position = this.wal.nextIndex): Promise<void> {
    if (position < this.wal.nextIndex) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `${this.location}: truncateAll(${position}) would move the log back from ${this.wal.nextIndex}`,
        { details: { file: this.location, index: position } },
      );
    }
    if (this.wal.count === 0 && position === this.wal.nextIndex) return;
    await this.wal.reset(position);
  }

  /**
   * Every retained record from `from` (default firstIndex), decoded and index-checked. The number
   * read must equal the count the log claims: a shortfall means records vanished silently.
   */
  readAll(from = this.wal.firstIndex): T[] {
    const start = Math.max(from, this.wal.firstIndex);
    const expected = Math.max(0, this.wal.nextIndex - start);
    const out: T[] = [];
    let index = start;
    for (const record of this.wal.iterate(start, this.wal.nextIndex)) {
      if (record.index !== index) {
        throw new CairnError(
          'DATA_LOSS',
          `${this.location}: expected record ${index}, the log yielded ${record.index}`,
          {
            details: { file: this.location, index },
          },
        );
      }
      out.push(this.decodeAt(index, record.payload));
      index++;
    }
    if (out.length !== expected) {
      throw new CairnError(
        'DATA_LOSS',
        `${this.location}: read ${out.length} records of [${start}, ${this.wal.nextIndex}), expected ${expected}: possible silent data loss`,
        { details: { file: this.location, index: start + out.length } },
      );
    }
    return out;
  }

  close(): Promise<void> {
    return this.wal.close();
  }
}
