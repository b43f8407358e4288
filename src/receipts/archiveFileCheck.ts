import { setImmediate as nextTurn } from 'node:timers/promises';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
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
      crc = (await crcOfOpenFile(h)).crc;
    } finally {
      h.close();
    }
  } catch (err) {
    throw ioFatal(`checksumming ${file}`, err);
  }
  return crc === ref.crc32c ? undefined : `${ref.name} fails its checksum`;
}

/** CRC-32C and size of an open file. */
export interface FileSum {
  crc: number;
  bytes: number;
}

/**
 * CRC-32C and size of an open file, one read of at most CHECK_CHUNK_BYTES per event-loop turn, so a
 * file of tens of MB never holds the loop (a freshly written archive file is summed while the write
 * loop keeps acknowledging blocks). A short read throws.
 */
export async function crcOfOpenFile(h: FileHandle): Promise<FileSum> {
  const sum = chunkedCrc(h);
  while (!sum.done) {
    await nextTurn();
    sum.step();
  }
  return sum.result();
}

/** The same sum in one synchronous call: for open-time and maintenance checks, which own the loop. */
export function crcOfOpenFileSync(h: FileHandle): FileSum {
  const sum = chunkedCrc(h);
  while (!sum.done) sum.step();
  return sum.result();
}

/** The read-and-sum loop both variants share; the first chunk is read at once. */
function chunkedCrc(h: FileHandle) {
  const size = h.size();
  const buf = new Uint8Array(Math.min(size, CHECK_CHUNK_BYTES));
  let crc = 0;
  let pos = 0;
  const state = {
    done: size === 0,
    step(): void {
      const n = h.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (n <= 0) throw new Error(`short read at ${pos} of ${size}`);
      crc = crc32c(buf.subarray(0, n), crc);
      pos += n;
      state.done = pos >= size;
    },
    result: (): FileSum => ({ crc, bytes: size }),
  };
  if (!state.done) state.step();
  return state;
}
