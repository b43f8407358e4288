/**
 * Issue #9 item 4: directory entries a killed process never fsynced must be made durable by the next
 * open. "Kill" here: the process's objects are abandoned without close on the same simulated file
 * system (page cache and unsynced directory entries kept); a new process opens, works, acknowledges;
 * then the power fails (DROP_ALL: everything nobody fsynced is lost). Acknowledged data must survive.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { openAbFile } from '../../src/io/abFile.ts';
import { mkdirDurable } from '../../src/io/fileSystem.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';

const payload = (i: number): Uint8Array => new Uint8Array(32).fill(i + 1);

async function appendAcked(wal: Wal, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) wal.append([payload(i)]);
  await wal.sync();
}

test('kill then power loss: a WAL directory created by a killed process survives once the next open acknowledged records', async () => {
  const fs = new SimulatedFileSystem({ seed: 11 });
  // The killed process created the directory tree and died before fsyncing any parent.
  fs.mkdir('/data/lanes/7');
  const wal = await Wal.open({ fs, dir: '/data/lanes/7', segmentBytes: 4096 });
  await appendAcked(wal, 0, 5);
  const image = fs.crashImage(DROP_ALL);
  const reopened = await Wal.open({ fs: image, dir: '/data/lanes/7', segmentBytes: 4096 });
  assert.equal(reopened.nextIndex, 5, 'acknowledged records [0, 5) must survive the power cut');
  await reopened.close();
});

test('kill then power loss: mkdirDurable on an existing directory makes its entry and its parents durable', () => {
  const fs = new SimulatedFileSystem({ seed: 12 });
  fs.mkdir('/a/b/c');
  assert.equal(mkdirDurable(fs, '/a/b/c', path), false);
  const image = fs.crashImage(DROP_ALL);
  assert.ok(image.exists('/a/b/c'), 'the directory an open relied on must be durable');
});

test('kill then power loss: a spare renamed into place by a killed process is made durable by the next open', async () => {
  const fs = new SimulatedFileSystem({ seed: 13 });
  const options = { fs, dir: '/wal', segmentBytes: 2048, spareSegment: 'always-ready' as const };
  const first = await Wal.open(options);
  // Let the spare get ready, then fill the first segment (36 frames of 56 bytes fit in 2048: a
  // 24-byte frame header and a 32-byte payload each).
  for (let i = 0; i < 50 && !fs.exists('/wal/next-segment.spare'); i++)
    await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  await appendAcked(first, 0, 36);
  assert.equal(first.segments().length, 1, 'precondition: the first segment is full, not yet sealed');
  // The next append rotates onto the spare: rename, then the directory fsync, where the process dies.
  fs.injectFault({ op: 'syncDir', nth: 1, error: 'EIO' });
  first.append([payload(36)]);
  await assert.rejects(first.sync());
  assert.ok(fs.exists('/wal/00000000000000000036.wal'), 'precondition: the spare was renamed into place');
  // (abandoned: no close)
  const restarted = await Wal.open({ ...options });
  const base = restarted.nextIndex;
  await appendAcked(restarted, base, 3);
  const acked = restarted.nextIndex;
  const image = fs.crashImage(DROP_ALL);
  const reopened = await Wal.open({ ...options, fs: image });
  assert.ok(
    reopened.nextIndex >= acked,
    `acknowledged records up to ${acked} must survive; the log reopened with next ${reopened.nextIndex}`,
  );
  await reopened.close();
});

test('kill then power loss: A/B slots created by a killed process are made durable by the next open', () => {
  const fs = new SimulatedFileSystem({ seed: 14 });
  fs.mkdir('/ab');
  fs.syncDir('/');
  fs.injectFault({ op: 'syncDir', nth: 1, error: 'EIO' });
  assert.throws(() => openAbFile(fs, '/ab', 'anchor'));
  // Restarted process: the slots exist (page cache), so today's open does not fsync the directory.
  const { file } = openAbFile(fs, '/ab', 'anchor');
  file.write(new Uint8Array([1, 2, 3]));
  const image = fs.crashImage(DROP_ALL);
  const { loaded } = openAbFile(image, '/ab', 'anchor');
  assert.deepEqual(loaded.payload, new Uint8Array([1, 2, 3]), 'the acknowledged payload must survive');
});
