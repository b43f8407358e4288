import { setImmediate as nextTurn } from 'node:timers/promises';
import type { FileSystem } from '../io/fileSystem.ts';
import { crc32c } from '../lib/crc32c.ts';
import { ioFatal } from '../lib/errors.ts';
import type { FileRef } from './manifest.ts';

/** Bytes checksummed per event-loop turn: about a millisecond of reading and CRC-32C. */
export const CHECK_CHUNK_BYTES = 1 << 20;

/**
 * Compares an archive file's size and CRC-32C with its manifest entry without holding the event
 * loop: the file (tens of MB) is read and checksummed one read of at most CHECK_CHUNK_BYTES per
 * turn, so other reads and writes keep running while a file is checked before its first read.
 * Returns what is wrong (missing, wrong size, wrong checksum) or undefined; an I/O error is thrown
 * as IO_FATAL naming the file.
 */
export async function checkArchiveFile(
  fs: FileSystem,
  file: string,
  ref: FileRef,
): Promise<string | undefined> {
  let crc = 0;
  try {
    if (!fs.exists(file)) return `${ref.name} is missing`;
    const h = fs.open(file, { readOnly: true });
    try {
      const size = h.size();
      if (size !== ref.bytes) return `${ref.name} is ${size} bytes, the manifest says ${ref.bytes}`;
      const buf = new Uint8Array(Math.min(size, CHECK_CHUNK_BYTES));
      for (let pos = 0; pos < size; ) {
        const n = h.read(buf, 0, Math.min(buf.length, size - pos), pos);
        if (n <= 0) throw new Error(`short read at ${pos} of ${size}`);
        crc = crc32c(buf.subarray(0, n), crc);
        pos += n;
        if (pos < size) await nextTurn();
      }
    } finally {
      h.close();
    }
  } catch (err) {
    throw ioFatal(`checksumming ${file}`, err);
  }
  return crc === ref.crc32c ? undefined : `${ref.name} fails its checksum`;
}
