/** Issue #12: the prepared spare segment survives a clean close, so a restart does not zero-fill again. */
import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { SPARE_SEGMENT_NAME } from '../../src/wal/spareSegment.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

async function turns(n = 30): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

test('issue #12: a clean close keeps the ready spare and the next open adopts it without writing zeros again', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const segmentBytes = 256 * 1024;
    const first = await Wal.open({
      fs: new WrappingFileSystem(),
      dir,
      segmentBytes,
      spareSegment: 'always-ready',
    });
    // Wait until the spare is fully written, then for its last fsync (on the thread pool).
    const spareFile = path.join(dir, SPARE_SEGMENT_NAME);
    for (
      let i = 0;
      i < 500 && !(nodeFs.existsSync(spareFile) && nodeFs.statSync(spareFile).size === segmentBytes);
      i++
    ) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(nodeFs.statSync(spareFile).size, segmentBytes, 'precondition: spare ready');
    first.append([payloadFor(0, 100)]);
    await first.close();
    const fs = new WrappingFileSystem();
    fs.recordEvents = true;
    const again = await Wal.open({ fs, dir, segmentBytes, spareSegment: 'always-ready' });
    await turns(200);
    const zeroFills = fs.events.filter((e) => e.phase === 'start' && e.call === 'allocate');
    assert.deepEqual(zeroFills, [], 'the restart zero-filled a spare again');
    // The adopted spare becomes the next segment at the first seal.
    let i = 1;
    while (again.segments().length === 1) {
      again.append([payloadFor(i++, 1000)]);
      await again.sync();
    }
    assert.ok(fs.events.some((e) => e.call === 'rename' && e.path.endsWith(SPARE_SEGMENT_NAME)));
    await again.close();
    const reopened = await Wal.open({ fs: new WrappingFileSystem(), dir, segmentBytes });
    assert.equal(reopened.nextIndex, i);
    reopened.verify();
    await reopened.close();
  } finally {
    cleanup();
  }
});
