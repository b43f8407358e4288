// The CRC-32C of a whole file as archive sealing and the first-read check take it
// (archiveFileCheck.ts): the asynchronous sum reads one chunk per event-loop turn, so a freshly
// written window file of tens of MB never holds the loop while blocks are acknowledged; the
// synchronous one (open-time and maintenance checks) gives the same answer; a short read throws.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FileHandle } from '../../src/io/fileSystem.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { crc32c } from '../../src/lib/crc32c.ts';
import { Rng } from '../../src/lib/rng.ts';
import { CHECK_CHUNK_BYTES, crcOfOpenFile, crcOfOpenFileSync } from '../../src/receipts/archiveFileCheck.ts';

const SIZES = [
  0,
  1,
  CHECK_CHUNK_BYTES - 1,
  CHECK_CHUNK_BYTES,
  CHECK_CHUNK_BYTES + 1,
  3 * CHECK_CHUNK_BYTES + 5,
];

test('both sums equal the CRC-32C of the whole file, and the async one yields between chunks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-filesum-'));
  try {
    const rng = new Rng(7);
    for (const size of SIZES) {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) bytes[i] = rng.int(0, 256);
      const file = join(dir, `f${size}`);
      writeFileSync(file, bytes);
      const want = { crc: crc32c(bytes), bytes: size };
      const h = realFileSystem.open(file, { readOnly: true });
      try {
        assert.deepEqual(crcOfOpenFileSync(h), want, `sync, ${size} bytes`);
        let turns = 0;
        let ticking = true;
        const tick = (): void => {
          turns++;
          if (ticking) setImmediate(tick);
        };
        setImmediate(tick);
        const got = await crcOfOpenFile(h);
        ticking = false;
        assert.deepEqual(got, want, `async, ${size} bytes`);
        const chunks = Math.ceil(size / CHECK_CHUNK_BYTES);
        // One chunk is read at once, every later one after a turn of the loop.
        assert.ok(turns >= chunks - 1, `${size} bytes: ${turns} turns for ${chunks} chunks`);
      } finally {
        h.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a read that returns nothing before the end is an error, not a short sum', async () => {
  const size = 2 * CHECK_CHUNK_BYTES;
  const handle = (): FileHandle =>
    ({
      size: () => size,
      read: (_buf: Uint8Array, _off: number, len: number, pos: number) =>
        pos >= CHECK_CHUNK_BYTES ? 0 : len,
    }) as unknown as FileHandle;
  assert.throws(() => crcOfOpenFileSync(handle()), /short read at 1048576 of 2097152/);
  await assert.rejects(crcOfOpenFile(handle()), /short read at 1048576 of 2097152/);
});
