import { openAbFile } from '../io/abFile.ts';
import type { AbSnapshotFile } from '../io/abFile.types.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { invariant } from '../lib/assert.ts';
import { CairnError } from '../lib/errors.ts';

/**
 * The WAL's durable metadata, kept in an A/B file (`wal.meta.a` / `wal.meta.b`) so front
 * truncation and reset never rewrite retained segment data.
 *
 * Payload version 2 (36 bytes, all LE):
 *   offset 0   version          u32  2
 *   offset 4   flags            u32  bit 0: CLEAN (the log was closed cleanly; cleanEndOffset holds)
 *                                    bit 1: SPARE (a fully zeroed, fsynced spare was kept at close)
 *                                    bit 2: CUT (a truncateBack to cutNext was started; never with CLEAN)
 *   offset 8   firstIndex       u64  the log's first index
 *   offset 16  durableNext      u64  every record in [firstIndex, durableNext) was acknowledged
 *                                    durable and never truncated back: damage below it is corruption
 *   offset 24  cleanEndOffset   u64  with CLEAN: where the tail's data ended at close (nothing past it
 *             / cutNext              was written since); with CUT: the index a truncateBack cut the log
 *                                    back to (frames at or above it may be stale: recovery takes no
 *                                    fsync proof from them); 0 otherwise
 *   offset 32  reserved         u32  0
 * Version 1 (12 bytes: version u32 = 1 | firstIndex u64) is still read: no durable marker, not clean.
 *
 * Every write goes to BOTH slots (a mirrored A/B file: two images, two fsyncs): a single bit flip in the newest slot
 * then falls back to a copy of the same state, never to an older first index (which would bring
 * front-truncated records back silently). Only a crash between the two writes leaves the slots
 * different, and then the older one holds the state before a call that had not returned.
 */
export const META_NAME = 'wal.meta';
const META_VERSION = 2;
const META_V1_PAYLOAD_BYTES = 12;
const META_PAYLOAD_BYTES = 36;
const FLAG_CLEAN = 1;
const FLAG_SPARE = 2;
const FLAG_CUT = 4;

export interface MetaState {
  firstIndex: number;
  /** Records below this are known durable (0 when nothing is known). */
  durableNext: number;
  /** Set only by a clean close: where the tail's data ends, and whether a spare was kept. */
  clean: { tailEndOffset: number; spareKept: boolean } | undefined;
  /**
   * Set by truncateBack before it cuts: frames at or above this index were written before the cut
   * and, until the cut's fsync, may survive a power cut in any subset of pages. Their `syncedNext`
   * is then no proof that a damaged record at or above this index was ever part of the log as it is.
   */
  cutNext?: number;
}

export function encodeMeta(state: MetaState): Uint8Array {
  invariant(state.durableNext >= 0 && Number.isSafeInteger(state.durableNext), 'durableNext is an index');
  const buf = new Uint8Array(META_PAYLOAD_BYTES);
  const view = new DataView(buf.buffer);
  view.setUint32(0, META_VERSION, true);
  invariant(state.clean === undefined || state.cutNext === undefined, 'a clean close finished every cut');
  let flags = state.clean === undefined ? 0 : FLAG_CLEAN | (state.clean.spareKept ? FLAG_SPARE : 0);
  if (state.cutNext !== undefined) flags |= FLAG_CUT;
  view.setUint32(4, flags, true);
  view.setBigUint64(8, BigInt(state.firstIndex), true);
  view.setBigUint64(16, BigInt(state.durableNext), true);
  view.setBigUint64(24, BigInt(state.clean?.tailEndOffset ?? state.cutNext ?? 0), true);
  return buf;
}

function safe(view: DataView, offset: number, file: string, what: string): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CairnError('WAL_CORRUPT', `WAL meta ${file} holds ${what} ${value}, not a safe integer`, {
      details: { file, offset },
    });
  }
  return Number(value);
}

/** Decodes a version 1 or 2 payload; anything else is WAL_CORRUPT (or WAL_FORMAT for a newer version). */
export function decodeMeta(payload: Uint8Array, file: string): MetaState {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const version = payload.byteLength >= 4 ? view.getUint32(0, true) : 0;
  if (version === 1 && payload.byteLength === META_V1_PAYLOAD_BYTES) {
    return { firstIndex: safe(view, 4, file, 'first index'), durableNext: 0, clean: undefined };
  }
  if (version > META_VERSION && payload.byteLength >= 4) {
    throw new CairnError(
      'WAL_CORRUPT',
      `WAL meta ${file} has format version ${version}; this build reads versions 1 and ${META_VERSION}`,
      { details: { file, offset: 0, version } },
    );
  }
  if (version !== META_VERSION || payload.byteLength !== META_PAYLOAD_BYTES) {
    throw new CairnError(
      'WAL_CORRUPT',
      `WAL meta ${file} has an unknown layout (${payload.byteLength} bytes)`,
      {
        details: { file, offset: 0 },
      },
    );
  }
  const flags = view.getUint32(4, true);
  if (
    (flags & ~(FLAG_CLEAN | FLAG_SPARE | FLAG_CUT)) !== 0 ||
    ((flags & FLAG_CLEAN) !== 0 && (flags & FLAG_CUT) !== 0) ||
    view.getUint32(32, true) !== 0
  ) {
    throw new CairnError('WAL_CORRUPT', `WAL meta ${file} has unknown flags ${flags}`, {
      details: { file, offset: 4 },
    });
  }
  const firstIndex = safe(view, 8, file, 'first index');
  const durableNext = safe(view, 16, file, 'durable next index');
  const tailEndOffset = safe(view, 24, file, 'clean end offset / cut index');
  const state: MetaState = {
    firstIndex,
    durableNext,
    clean: (flags & FLAG_CLEAN) !== 0 ? { tailEndOffset, spareKept: (flags & FLAG_SPARE) !== 0 } : undefined,
  };
  if ((flags & FLAG_CUT) !== 0) state.cutNext = tailEndOffset;
  return state;
}

export interface WalMeta {
  /** The durable state, or undefined if never written. */
  readonly state: MetaState | undefined;
  /** Durable first index, or undefined if never written. */
  readonly firstIndex: number | undefined;
  warnings: string[];
  /** Writes a new state durably to both slots (two fsyncs on the calling thread). */
  write(state: MetaState): void;
  /** The same with the fsyncs on the thread pool; calls are queued, each durable when it resolves. */
  writeAsync(state: MetaState): Promise<void>;
  /** Settles once every queued `writeAsync` has (a sync `write` must not overlap one). */
  idle(): Promise<void>;
  close(): void;
}

export function openWalMeta(fs: FileSystem, dir: string, readOnly: boolean): WalMeta {
  const file = `${dir}/${META_NAME}`;
  const { file: ab, loaded } = openAbFile(fs, dir, META_NAME, {
    readOnly,
    maxPayloadBytes: 64,
    mirror: true,
    // A slot whose checksum holds but whose payload does not decode is treated as damaged, so the
    // other slot (which holds the same state: writes are mirrored) is used instead.
    validate: (payload) => {
      try {
        decodeMeta(payload, file);
        return undefined;
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
    },
  });
  return new AbWalMeta(
    ab,
    loaded.payload === undefined ? undefined : decodeMeta(loaded.payload, file),
    loaded.warnings,
  );
}

class AbWalMeta implements WalMeta {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly ab: AbSnapshotFile,
    public state: MetaState | undefined,
    public readonly warnings: string[],
  ) {}

  get firstIndex(): number | undefined {
    return this.state?.firstIndex;
  }

  write(state: MetaState): void {
    this.ab.write(encodeMeta(state));
    this.state = state;
  }

  writeAsync(state: MetaState): Promise<void> {
    const payload = encodeMeta(state);
    const run = this.queue.then(async () => {
      await this.ab.writeAsync(payload);
      this.state = state;
    });
    // A failure is reported to this call's caller; the queue itself carries on (the A/B file latches).
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Settles once every queued `writeAsync` has (a sync `write` must not overlap one). */
  idle(): Promise<void> {
    return this.queue;
  }

  close(): void {
    this.ab.close();
  }
}
