import { decodePruneAnchor, encodePruneAnchor } from '../domain/codecs.ts';
import type { PruneAnchor } from '../domain/types.ts';
import { openAbFile } from '../io/abFile.ts';
import type { AbSnapshotFile } from '../io/abFile.types.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { CairnError, describe, FatalLatch } from '../lib/errors.ts';

/**
 * The prune anchor (newest AppQC + the CommitQC of the same road) in an A/B snapshot file
 * `<dir>/anchor.a|.b`. The anchor is the low-water mark every truncation relies on, so it is
 * written (one fsync) before any truncation it justifies. A torn first write opens as "no anchor"
 * (the A/B file handles that), which is safe because nothing can have been truncated before the
 * first anchor was durable.
 */
export const ANCHOR_FILE_NAME = 'anchor';
/** An anchor holds two quorum certificates; 1 MiB covers a committee of 1,024 comfortably. */
const MAX_ANCHOR_BYTES = 1 << 20;

export interface AnchorStore {
  /** Writes `anchor` durably (returns after the fsync). Latches on failure. */
  write(anchor: PruneAnchor): void;
  /**
   * The same, with the fsync on the thread pool: resolves once the anchor is durable. The persist
   * loop uses it so an anchor's fsync never stalls the main thread, and with it every lane.
   * Calls must not overlap (the anchor pipeline awaits each one): an overlapping call is refused
   * with CONFLICT and does not latch.
   */
  writeAsync(anchor: PruneAnchor): Promise<void>;
  close(): void;
}

export function openAnchorStore(
  fs: FileSystem,
  dir: string,
): { store: AnchorStore; loaded: PruneAnchor | undefined; warnings: string[] } {
  const { file, loaded } = openAbFile(fs, dir, ANCHOR_FILE_NAME, { maxPayloadBytes: MAX_ANCHOR_BYTES });
  let anchor: PruneAnchor | undefined;
  if (loaded.payload !== undefined) {
    try {
      anchor = decodePruneAnchor(loaded.payload);
    } catch (err) {
      file.close();
      throw new CairnError(
        'CORRUPT',
        `prune anchor in ${dir}/${ANCHOR_FILE_NAME} does not decode: ${describe(err)}`,
        {
          cause: err,
          details: { file: `${dir}/${ANCHOR_FILE_NAME}`, seq: loaded.seq },
        },
      );
    }
  }
  return { store: new AbAnchorStore(file, dir), loaded: anchor, warnings: loaded.warnings };
}

/**
 * Anchor encoding on top of the A/B file, which owns the slot format, the alternation rule and the
 * write (sync or with the fsync on the thread pool). This layer adds its own latch because the
 * persist loop stops at its first I/O error: unlike the bare A/B file, even a failed plain write
 * (not only a failed fsync) leaves the anchor store failed.
 */
class AbAnchorStore implements AnchorStore {
  private readonly latch = new FatalLatch();

  constructor(
    private readonly file: AbSnapshotFile,
    private readonly dir: string,
  ) {}

  write(anchor: PruneAnchor): void {
    const payload = this.encode(anchor);
    try {
      this.file.write(payload);
    } catch (err) {
      throw this.failed(err);
    }
  }

  async writeAsync(anchor: PruneAnchor): Promise<void> {
    const payload = this.encode(anchor);
    try {
      await this.file.writeAsync(payload);
    } catch (err) {
      throw this.failed(err);
    }
  }

  private encode(anchor: PruneAnchor): Uint8Array {
    this.latch.check();
    return encodePruneAnchor(anchor);
  }

  /** Latches I/O failures; a refused call (closed, overlapping, too large) changes nothing on disk. */
  private failed(err: unknown): CairnError {
    return this.latch.passCallerErrors(err, `writing the prune anchor in ${this.dir}`);
  }

  close(): void {
    this.file.close();
  }
}

/** No-op mode: the anchor is "durable" at once and nothing is stored. */
export class NullAnchorStore implements AnchorStore {
  write(anchor: PruneAnchor): void {
    encodePruneAnchor(anchor); // still validates the anchor (matching roads)
  }
  async writeAsync(anchor: PruneAnchor): Promise<void> {
    this.write(anchor);
  }
  close(): void {}
}
