import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { acquireDirLock, LOCK_PID_FILE } from '../../src/io/dirLock.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { siblingPath, spawnTsChild } from '../support/childProcess.ts';

const CHILD = siblingPath(import.meta.url, '../support/lockHolderChild.ts');
const root = mkdtempSync(join(tmpdir(), 'cairn-dirlock-'));
after(() => rmSync(root, { recursive: true, force: true }));

type ChildReport = { type: 'locked'; pid: number } | { type: 'error'; code: string; message: string };
const isReport = (m: unknown): boolean => typeof m === 'object' && m !== null && 'type' in m;

async function childTry(dir: string): Promise<ChildReport> {
  const c = spawnTsChild(CHILD, [dir, 'try']);
  try {
    return await c.waitFor<ChildReport>(isReport);
  } finally {
    await c.kill9();
  }
}

describe('acquireDirLock', () => {
  test('in-process: a second acquire is LOCKED; release frees it; release is idempotent', async () => {
    const dir = join(root, 'inproc');
    const lock = await acquireDirLock(dir);
    assert.equal(readFileSync(join(dir, LOCK_PID_FILE), 'utf8').trim(), String(process.pid));
    await assert.rejects(acquireDirLock(dir), (err: unknown) => {
      assert.ok(isCairnError(err, 'LOCKED'));
      assert.equal(err.kind, 'transient');
      assert.match(
        err.message,
        new RegExp(`data directory .*inproc is locked by this process \\(pid ${process.pid}\\)`),
      );
      assert.equal(err.details.file, dir);
      return true;
    });
    await lock.release();
    await lock.release();
    assert.equal(existsSync(join(dir, LOCK_PID_FILE)), false, 'pid file removed on release');
    const again = await acquireDirLock(dir);
    await again.release();
  });

  test('concurrent acquires in one process: exactly one wins', async () => {
    const dir = join(root, 'race');
    const results = await Promise.allSettled([acquireDirLock(dir), acquireDirLock(dir), acquireDirLock(dir)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isCairnError(r.reason, 'LOCKED'));
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireDirLock>>>).value.release();
  });

  test('another process holding the lock: LOCKED naming path and pid, every time it is tried', async () => {
    const dir = join(root, 'held');
    const holder = spawnTsChild(CHILD, [dir, 'hold']);
    try {
      const report = await holder.waitFor<ChildReport>(isReport);
      assert.equal(report.type, 'locked');
      for (let i = 0; i < 2; i++) {
        await assert.rejects(acquireDirLock(dir), (err: unknown) => {
          assert.ok(isCairnError(err, 'LOCKED'));
          assert.ok(err.message.includes(dir), err.message);
          assert.ok(err.message.includes(`pid ${holder.child.pid}`), err.message);
          return true;
        });
      }
    } finally {
      await holder.kill9();
    }
  });

  test('a process holding the lock keeps it across its own failed re-acquire (LevelDB close-fd pitfall)', async () => {
    const dir = join(root, 'pitfall');
    const lock = await acquireDirLock(dir);
    try {
      await assert.rejects(acquireDirLock(dir), (err: unknown) => isCairnError(err, 'LOCKED'));
      const report = await childTry(dir);
      assert.equal(report.type, 'error');
      assert.equal((report as { code: string }).code, 'LOCKED');
      assert.match((report as { message: string }).message, new RegExp(`pid ${process.pid}`));
    } finally {
      await lock.release();
    }
    assert.equal((await childTry(dir)).type, 'locked', 'free again after release');
  });

  test('a SIGKILLed holder does not keep the lock', async () => {
    for (let round = 0; round < 3; round++) {
      const dir = join(root, `killed-${round}`);
      const holder = spawnTsChild(CHILD, [dir, 'hold']);
      assert.equal((await holder.waitFor<ChildReport>(isReport)).type, 'locked');
      await assert.rejects(acquireDirLock(dir), (err: unknown) => isCairnError(err, 'LOCKED'));
      const killedAt = Date.now();
      await holder.kill9();
      const lock = await acquireDirLock(dir);
      const elapsedMs = Date.now() - killedAt;
      // Generous bound, not a timing bar: it proves there is no stale-lock timeout.
      assert.ok(elapsedMs < 2000, `re-acquire after SIGKILL took ${elapsedMs} ms`);
      assert.equal(readFileSync(join(dir, LOCK_PID_FILE), 'utf8').trim(), String(process.pid));
      await lock.release();
    }
  });
});
