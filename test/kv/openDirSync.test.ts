// LevelDB 1.20 fsyncs its directory at open only inside the new MANIFEST's sync, before it renames
// CURRENT to that MANIFEST and unlinks the old log and MANIFEST. The adapter fsyncs the directory
// (and the chain to it) once the open is done. The first test fails on 9d19c22 (no fsync after open);
// the second shows, on LevelDB's own files, what a power cut that keeps the unlink of the old log
// but loses the rename leaves: an open that succeeds and silently misses the recovered data.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import type { FileSystem } from '../../src/io/fileSystem.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { ClassicLevelKv } from '../../src/kv/classicLevelKv.ts';
import { u64Key } from '../../src/kv/orderedKv.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cairn-kv-opensync-'));
  dirs.push(d);
  return d;
}

const key = (n: number): Uint8Array => u64Key(3, n);
const value = (n: number): Uint8Array => new Uint8Array(100).fill(n & 0xff);

/** The real file system, recording each directory fsync with what the directory held at that moment. */
function recordingFs(): { fs: FileSystem; synced: { dir: string; entries: string[] }[] } {
  const synced: { dir: string; entries: string[] }[] = [];
  const fs = Object.create(realFileSystem) as FileSystem;
  fs.syncDir = (p: string) => {
    synced.push({ dir: p, entries: readdirSync(p).sort() });
    realFileSystem.syncDir(p);
  };
  return { fs, synced };
}

async function writeKeys(kv: ClassicLevelKv, from: number, to: number): Promise<void> {
  const b = kv.batch();
  for (let n = from; n < to; n++) b.put(key(n), value(n));
  await b.write({ sync: true });
}

for (const fresh of [true, false]) {
  test(`open fsyncs the directory after LevelDB's rename of CURRENT and its unlinks (${fresh ? 'new directory' : 'reopen with a log to recover'})`, async () => {
    const location = join(tempDir(), 'a', 'hot');
    if (!fresh) {
      const kv = await ClassicLevelKv.open(location);
      await writeKeys(kv, 0, 100);
      await kv.close();
    }
    const { fs, synced } = recordingFs();
    const kv = await ClassicLevelKv.open(location, { fs });
    try {
      const own = synced.find((s) => s.dir === location);
      assert.ok(own, 'the store directory was fsynced by open');
      // What the fsync made durable is the final state of the open: CURRENT names a MANIFEST that
      // exists, and one log (the new one) is left.
      const current = readFileSync(join(location, 'CURRENT'), 'utf8').trim();
      assert.ok(own.entries.includes(current), `CURRENT's ${current} was there at the fsync`);
      assert.equal(
        own.entries.filter((e) => e.startsWith('MANIFEST-')).length,
        1,
        'the old MANIFEST was gone',
      );
      assert.equal(own.entries.filter((e) => e.endsWith('.log')).length, 1, 'the old log was gone');
      // And the entries leading to it (classic-level creates missing parents).
      for (let d = dirname(location); ; d = dirname(d)) {
        assert.ok(
          synced.some((s) => s.dir === d),
          `ancestor ${d} was fsynced`,
        );
        if (dirname(d) === d) break;
      }
      if (!fresh) assert.deepEqual(kv.get(key(7)), value(7));
    } finally {
      await kv.close();
    }
  });
}

test('without that fsync: a power cut keeping the unlink of the old log but not the rename of CURRENT loses the recovered data silently', async () => {
  const location = join(tempDir(), 'hot');
  const kv1 = await ClassicLevelKv.open(location);
  await writeKeys(kv1, 0, 100);
  await kv1.close();
  // Before the reopen: CURRENT and the MANIFEST it names (the old log holds the 100 keys).
  const oldCurrent = readFileSync(join(location, 'CURRENT'));
  const oldManifest = oldCurrent.toString('utf8').trim();
  const oldManifestBytes = readFileSync(join(location, oldManifest));

  const kv2 = await ClassicLevelKv.open(location);
  try {
    assert.deepEqual(kv2.get(key(50)), value(50));
    // The image: every file as now, but the rename of CURRENT and the unlink of the old MANIFEST
    // lost (the unlink of the old log kept): the directory state LevelDB's own fsync left durable,
    // less one unlink.
    const image = tempDir();
    cpSync(location, image, { recursive: true });
    rmSync(join(image, 'LOCK'), { force: true });
    writeFileSync(join(image, 'CURRENT'), oldCurrent);
    writeFileSync(join(image, oldManifest), oldManifestBytes);
    const kv3 = await ClassicLevelKv.open(image, { createIfMissing: false });
    try {
      assert.equal(kv3.get(key(50)), undefined, 'the open succeeds and the 100 keys are gone');
    } finally {
      await kv3.close();
    }
  } finally {
    await kv2.close();
  }
});
