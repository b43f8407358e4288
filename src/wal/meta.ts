import { openAbFile } from '../io/abFile.ts';
import type { AbSnapshotFile } from '../io/abFile.types.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { CairnError } from '../lib/errors.ts';

/**
 * The WAL's durable logical first index, kept in an A/B file (`wal.meta.a` / `wal.meta.b`) so
 * front truncation and reset never rewrite retained segment data.
 *
 * Payload (12 bytes): version u32 LE (1) | firstIndex u64 LE.
 */
export const META_NAME = 'wal.meta';
const META_VERSION = 1;
const META_PAYLOAD_BYTES = 12;

export function encodeMeta(firstIndex: number): Uint8Array {
  const buf = new Uint8Array(META_PAYLOAD_BYTES);
  const view = new DataView(buf.buffer);
  view.setUint32(0, META_VERSION, true);
  view.setBigUint64(4, BigInt(firstIndex), true);
  return buf;
}

export function decodeMeta(payload: Uint8Array, file: string): number {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload.byteLength !== META_PAYLOAD_BYTES || view.getUint32(0, true) !== META_VERSION) {
    throw new CairnError(
      'WAL_CORRUPT',
      `WAL meta ${file} has an unknown layout (${payload.byteLength} bytes)`,
      {
        details: { file, offset: 0 },
      },
    );
  }
  const first = view.getBigUint64(4, true);
  if (first > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CairnError('WAL_CORRUPT', `WAL meta ${file} holds first index ${first}, not a safe integer`, {
      details: { file, offset: 4 },
    });
  }
  return Number(first);
}

export interface WalMeta {
  /** Durable first index, or undefined if never written. */
  firstIndex: number | undefined;
  warnings: string[];
  /** Writes a new first index durably (one fsync). */
  write(firstIndex: number): void;
  close(): void;
}

export function openWalMeta(fs: FileSystem, dir: string, readOnly: boolean): WalMeta {
  const { file, loaded } = openAbFile(fs, dir, META_NAME, { readOnly, maxPayloadBytes: 64 });
  const ab: AbSnapshotFile = file;
  const firstIndex =
    loaded.payload === undefined ? undefined : decodeMeta(loaded.payload, `${dir}/${META_NAME}`);
  return {
    firstIndex,
    warnings: loaded.warnings,
    write: (first) => ab.write(encodeMeta(first)),
    close: () => ab.close(),
  };
}
