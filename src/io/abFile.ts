import * as path from 'node:path';
import { invariant } from '../lib/assert.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { crc32c } from '../lib/crc32c.ts';
import { CairnError, errnoCode, FatalLatch, ioFatal } from '../lib/errors.ts';
import type { AbLoadResult, AbSnapshotFile } from './abFile.types.ts';
import type { FileHandle, FileSystem } from './fileSystem.ts';
import { readAt, writeFully } from './fileSystem.ts';

/**
 * A/B snapshot file: two slot files `<name>.a` and `<name>.b`, each holding one whole image
 *
 *   offset 0   crc32c         u32 LE  over bytes [4, 16 + payloadLength)
 *   offset 4   seq            u64 LE  >= 1, +1 per write
 *   offset 12  payloadLength  u32 LE
 *   offset 16  payload
 *
 * A write always goes to the slot that does not hold the current winner, so a torn write can only
 * damage the copy that was already superseded. Both slot files are created at open (and the
 * directory fsynced), so a write never creates a directory entry and costs exactly one fsync.
 */
const SLOT_HEADER_BYTES = 16;
export const AB_DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20;

export interface AbOpenOptions {
  /** Largest payload written or accepted on load. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Do not create slot files; `write` fails. For inspection tools. */
  readOnly?: boolean;
  /**
   * Checks a payload whose checksum holds (e.g. decodes it); returns a reason to reject it or
   * undefined. A rejected slot is treated as damaged, so the other slot's image is used instead of
   * failing on a winner that cannot be decoded.
   */
  validate?: (payload: Uint8Array) => string | undefined;
  /**
   * Write every image to both slots (two fsyncs per write), so that a single damaged slot always
   * falls back to the same state, never to the previous one. Default false: only the very first
   * image goes to both slots.
   */
  mirror?: boolean;
}

type SlotName = 'a' | 'b';

/** An image written to its slot but not yet fsynced. */
interface PendingWrite {
  target: SlotName;
  file: string;
  seq: number;
  handle: FileHandle;
}

type SlotState =
  | { kind: 'absent' }
  | { kind: 'corrupt'; reason: string }
  | { kind: 'valid'; seq: number; payload: Uint8Array };

export function encodeSlotImage(seq: number, payload: Uint8Array): Uint8Array {
  const image = new Uint8Array(SLOT_HEADER_BYTES + payload.byteLength);
  const view = new DataView(image.buffer);
  view.setBigUint64(4, BigInt(seq), true);
  view.setUint32(12, payload.byteLength, true);
  image.set(payload, SLOT_HEADER_BYTES);
  view.setUint32(0, crc32c(image.subarray(4)), true);
  return image;
}

function decodeSlotImage(bytes: Uint8Array, maxPayloadBytes: number): SlotState {
  if (bytes.byteLength === 0) return { kind: 'absent' };
  if (bytes.byteLength < SLOT_HEADER_BYTES) {
    return {
      kind: 'corrupt',
      reason: `${bytes.byteLength} bytes, shorter than the ${SLOT_HEADER_BYTES}-byte header`,
    };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(12, true);
  if (length > maxPayloadBytes) {
    return { kind: 'corrupt', reason: `payload length ${length} exceeds the maximum ${maxPayloadBytes}` };
  }
  if (SLOT_HEADER_BYTES + length !== bytes.byteLength) {
    return {
      kind: 'corrupt',
      reason: `payload length ${length} does not match the file size ${bytes.byteLength}`,
    };
  }
  if (crc32c(bytes.subarray(4)) !== view.getUint32(0, true))
    return { kind: 'corrupt', reason: 'checksum mismatch' };
  const seq = view.getBigUint64(4, true);
  if (seq === 0n || seq > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { kind: 'corrupt', reason: `sequence number ${seq} out of range` };
  }
  return { kind: 'valid', seq: Number(seq), payload: bytes.slice(SLOT_HEADER_BYTES) };
}

function readSlot(fs: FileSystem, file: string, maxPayloadBytes: number): SlotState {
  if (!fs.exists(file)) return { kind: 'absent' };
  let handle: ReturnType<FileSystem['open']> | undefined;
  try {
    handle = fs.open(file, { readOnly: true });
    const size = handle.size();
    // Never read an unbounded amount: an oversized slot is corrupt whatever it contains.
    if (size > SLOT_HEADER_BYTES + maxPayloadBytes) {
      return { kind: 'corrupt', reason: `${size} bytes, larger than the maximum image` };
    }
    return decodeSlotImage(readAt(handle, 0, size), maxPayloadBytes);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'absent' };
    throw ioFatal(`reading A/B slot ${file}`, err, { file });
  } finally {
    handle?.close();
  }
}

/** A slot whose checksum holds but whose payload the owner rejects counts as damaged. */
function validated(slot: SlotState, validate: AbOpenOptions['validate']): SlotState {
  if (slot.kind !== 'valid' || validate === undefined) return slot;
  const problem = validate(slot.payload);
  return problem === undefined ? slot : { kind: 'corrupt', reason: `payload rejected: ${problem}` };
}

/** Applies the load rules to the two slot states; exported for the rule-table tests. */
export function chooseSlot(
  files: Record<SlotName, string>,
  a: SlotState,
  b: SlotState,
): { winner: SlotName | undefined; result: AbLoadResult } {
  const warnings: string[] = [];
  if (a.kind === 'valid' && b.kind === 'valid') {
    if (a.seq === b.seq) {
      if (!bytesEqual(a.payload, b.payload)) {
        throw new CairnError(
          'AB_CORRUPT',
          `A/B slots ${files.a} and ${files.b} both hold sequence ${a.seq} with different payloads`,
          { details: { file: files.a, otherFile: files.b, seq: a.seq } },
        );
      }
      return { winner: 'a', result: { payload: a.payload, seq: a.seq, warnings } };
    }
    const winner: SlotName = a.seq > b.seq ? 'a' : 'b';
    const chosen = winner === 'a' ? a : b;
    return { winner, result: { payload: chosen.payload, seq: chosen.seq, warnings } };
  }
  for (const [name, mine, other] of [
    ['a', a, b],
    ['b', b, a],
  ] as const) {
    if (mine.kind !== 'valid') continue;
    if (other.kind === 'corrupt') {
      const otherName = name === 'a' ? 'b' : 'a';
      warnings.push(
        `A/B slot ${files[otherName]} is corrupt (${other.reason}); using ${files[name]} (seq ${mine.seq})`,
      );
    }
    return { winner: name, result: { payload: mine.payload, seq: mine.seq, warnings } };
  }
  if (a.kind === 'absent' && b.kind === 'absent') {
    return { winner: undefined, result: { payload: undefined, seq: 0, warnings } };
  }
  if (a.kind === 'corrupt' && b.kind === 'corrupt') {
    throw new CairnError(
      'AB_CORRUPT',
      `both A/B slots are corrupt: ${files.a} (${a.reason}) and ${files.b} (${b.reason})`,
      { details: { file: files.a, otherFile: files.b } },
    );
  }
  // One slot corrupt, the other never written. Writes alternate slots, so this state arises from a
  // torn very first write: nothing was ever durable, and refusing to start would need a manual wipe.
  const corruptName: SlotName = a.kind === 'corrupt' ? 'a' : 'b';
  const corrupt = (corruptName === 'a' ? a : b) as { reason: string };
  warnings.push(
    `A/B slot ${files[corruptName]} is corrupt (${corrupt.reason}) and the other slot was never written: ` +
      'treating this as a torn first write and starting EMPTY',
  );
  return { winner: undefined, result: { payload: undefined, seq: 0, warnings } };
}

function closeQuietly(handle: FileHandle): void {
  try {
    handle.close();
  } catch {
    // Already failing with a more useful error.
  }
}

class AbFile implements AbSnapshotFile {
  private currentSeq: number;
  private winner: SlotName | undefined;
  private closed = false;
  /** True while a `writeAsync` waits for its fsync (see `writeImage`). */
  private syncInFlight = false;
  private readonly latch = new FatalLatch();

  constructor(
    private readonly fs: FileSystem,
    private readonly files: Record<SlotName, string>,
    loaded: { winner: SlotName | undefined; seq: number },
    private readonly maxPayloadBytes: number,
    private readonly readOnly: boolean,
    private readonly mirror: boolean,
  ) {
    this.currentSeq = loaded.seq;
    this.winner = loaded.winner;
  }

  get seq(): number {
    return this.currentSeq;
  }

  write(payload: Uint8Array): void {
    const copy = this.needsCopy();
    for (const kind of copy ? (['primary', 'copy'] as const) : (['primary'] as const)) {
      const pending = this.writeImage(payload, kind);
      try {
        pending.handle.sync();
      } catch (err) {
        throw this.fsyncFailed(pending.file, err);
      } finally {
        pending.handle.close();
      }
      if (kind === 'primary') this.commit(pending);
    }
  }

  async writeAsync(payload: Uint8Array): Promise<void> {
    const copy = this.needsCopy();
    for (const kind of copy ? (['primary', 'copy'] as const) : (['primary'] as const)) {
      // Throws (so the promise rejects) before anything is marked in flight.
      const pending = this.writeImage(payload, kind);
      this.syncInFlight = true;
      try {
        await pending.handle.syncAsync();
      } catch (err) {
        throw this.fsyncFailed(pending.file, err);
      } finally {
        this.syncInFlight = false;
        pending.handle.close();
      }
      if (kind === 'primary') this.commit(pending);
    }
  }

  /**
   * Whether a write also puts a copy of its image (same seq, same payload) into the other slot once
   * the image is durable: always when mirroring, and for the very first image, so that damage to a
   * single slot can never turn a written file into "never written" (which loads as empty).
   */
  private needsCopy(): boolean {
    return this.mirror || this.winner === undefined;
  }

  /**
   * The part shared by `write` and `writeAsync`: checks the call, then writes the image (seq + 1 for
   * a primary, the winner's seq for a copy) into the slot that does not hold the winner and cuts the
   * slot to the image's length. Returns the still-open handle; the caller fsyncs it and then (for a
   * primary) calls `commit`. Nothing is durable yet.
   */
  private writeImage(payload: Uint8Array, kind: 'primary' | 'copy'): PendingWrite {
    this.latch.check();
    if (this.closed) throw new CairnError('CLOSED', `A/B file ${this.files.a} is closed`);
    if (this.readOnly)
      throw new CairnError('INVALID_ARGUMENT', `A/B file ${this.files.a} was opened read-only`);
    const target: SlotName = this.winner === 'a' ? 'b' : 'a';
    const file = this.files[target];
    if (this.syncInFlight) {
      // The only slot a write may use is the one whose fsync is still running: a second image there
      // would race the first one's fsync, and its seq would not be known yet. Refuse, never queue.
      throw new CairnError(
        'CONFLICT',
        `A/B file ${this.files.a}: a write (seq ${this.currentSeq + 1}) is still waiting for its fsync; ` +
          'writes must not overlap',
        { details: { file, seq: this.currentSeq + 1 } },
      );
    }
    if (payload.byteLength > this.maxPayloadBytes) {
      throw new CairnError(
        'RECORD_TOO_LARGE',
        `A/B payload of ${payload.byteLength} bytes exceeds the maximum ${this.maxPayloadBytes}`,
        { details: { file, bytes: payload.byteLength, maxBytes: this.maxPayloadBytes } },
      );
    }
    // A copy repeats the winner's image (written by the primary step just before) in the other slot.
    const seq = kind === 'primary' ? this.currentSeq + 1 : this.currentSeq;
    if (kind === 'copy') invariant(this.winner !== undefined && seq >= 1, 'a copy follows a committed image');
    const image = encodeSlotImage(seq, payload);
    const handle = this.openSlot(file);
    try {
      // Overwrite in place, then cut any longer previous image. The slot is not the winner, so
      // a tear here loses nothing; seq and winner move only after the fsync returned.
      writeFully(handle, [image], 0);
      // Always cut, never only when the cached size differs: after an earlier failed fsync the
      // cached size may not match the disk's, and a longer stale tail on disk would make this slot
      // unreadable after a power cut.
      handle.truncate(image.byteLength);
    } catch (err) {
      closeQuietly(handle); // the write error is the one to report
      // A failed write (ENOSPC, EIO on pwrite) leaves seq and the winner untouched: the next
      // write rewrites this same non-winning slot completely before its own fsync.
      throw ioFatal(`writing A/B slot ${file}`, err, { file });
    }
    return { target, file, seq, handle };
  }

  /**
   * A failed fsync may have dropped dirty pages while marking them clean; nothing written through
   * this file can be trusted again, so latch (never retry an fsync).
   */
  private fsyncFailed(file: string, err: unknown): CairnError {
    return this.latch.latch(ioFatal(`fsync of A/B slot ${file}`, err, { file }));
  }

  /** Called only once the fsync covering `pending` returned: the new image is the winner. */
  private commit(pending: PendingWrite): void {
    invariant(pending.seq === this.currentSeq + 1, 'A/B sequence numbers advance by one per image');
    invariant(pending.target !== this.winner, 'an A/B write never overwrites the current winner');
    this.currentSeq = pending.seq;
    this.winner = pending.target;
  }

  private openSlot(file: string): FileHandle {
    try {
      return this.fs.open(file, { create: false });
    } catch (err) {
      throw ioFatal(`opening A/B slot ${file}`, err, { file });
    }
  }

  close(): void {
    this.closed = true;
  }
}

export interface OpenedAbFile {
  file: AbSnapshotFile;
  loaded: AbLoadResult;
}

/**
 * Loads `<dir>/<name>.a` and `<name>.b` and returns the writer plus the newest valid payload.
 * The directory must exist. Missing slot files are created (and the directory fsynced) unless
 * `readOnly`. Throws AB_CORRUPT when no valid copy exists but something was written.
 */
export function openAbFile(
  fs: FileSystem,
  dir: string,
  name: string,
  options: AbOpenOptions = {},
): OpenedAbFile {
  const maxPayloadBytes = options.maxPayloadBytes ?? AB_DEFAULT_MAX_PAYLOAD_BYTES;
  const files: Record<SlotName, string> = { a: path.join(dir, `${name}.a`), b: path.join(dir, `${name}.b`) };
  const a = validated(readSlot(fs, files.a, maxPayloadBytes), options.validate);
  const b = validated(readSlot(fs, files.b, maxPayloadBytes), options.validate);
  const { winner, result } = chooseSlot(files, a, b);
  if (!options.readOnly) {
    for (const file of [files.a, files.b]) {
      if (fs.exists(file)) continue;
      try {
        fs.open(file, { create: true }).close();
      } catch (err) {
        throw ioFatal(`creating A/B slot ${file}`, err, { file });
      }
    }
    try {
      // Unconditionally: slots a killed process created (or renamed) may exist only in the page
      // cache, and a power cut after this process acknowledged a write would remove them.
      fs.syncDir(dir);
    } catch (err) {
      throw ioFatal(`fsync of directory ${dir}`, err, { file: dir });
    }
    // The winner may have been read from the page cache of a process that was killed before its
    // fsync. Make it durable before anyone acts on it (e.g. prunes logs below a loaded anchor).
    if (winner !== undefined) {
      const file = files[winner];
      try {
        const handle = fs.open(file);
        try {
          handle.sync();
        } finally {
          handle.close();
        }
      } catch (err) {
        throw ioFatal(`fsync of A/B slot ${file}`, err, { file });
      }
    }
  }
  return {
    file: new AbFile(
      fs,
      files,
      { winner, seq: result.seq },
      maxPayloadBytes,
      options.readOnly ?? false,
      options.mirror ?? false,
    ),
    loaded: result,
  };
}
