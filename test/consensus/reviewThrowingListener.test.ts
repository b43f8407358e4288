/**
 * A `subscribeVoteable` or `subscribeCommitQC` listener that throws breaks its own contract, not
 * the store's: persistence must not latch as fatal (every later vote and CommitQC would be
 * refused until a restart), the listeners after it must still hear the event, and the throw must
 * not be swallowed (it surfaces as an uncaught exception, as a throwing commit-scheduler callback
 * does). On 9d19c22 the throw escaped into the persist pipeline and latched it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { catchingUncaught } from '../support/uncaught.ts';
import { openCp, settle, simFs, smallFixture } from './helpers.ts';

test('a throwing voteable listener is reported, not fatal; later listeners still hear the move', async () => {
  await catchingUncaught(async (thrown) => {
    const f = smallFixture(2);
    const lane = f.laneAt(0);
    const cp = await openCp(simFs(), f);
    const boom = new Error('voteable listener broke its contract');
    const heard: number[] = [];
    let throwing = true;
    cp.subscribeVoteable(() => {
      if (throwing) throw boom;
    });
    cp.subscribeVoteable((l, next) => {
      if (l === lane) heard.push(next);
    });
    assert.equal(cp.pushBlock(f.produceBlock(lane)), 'accepted');
    assert.equal(await cp.waitVoteable(lane, 0), 'durable');
    await settle();
    assert.equal(cp.failure, undefined, 'persistence is not latched by a listener');
    assert.ok(thrown.includes(boom), 'the throw surfaced as an uncaught exception');
    assert.ok(heard.includes(1), 'the listener after the throwing one heard the move');

    // Still usable: more blocks become voteable (the listener keeps throwing for one more).
    assert.equal(cp.pushBlock(f.produceBlock(lane)), 'accepted');
    assert.equal(await cp.waitVoteable(lane, 1), 'durable');
    throwing = false;
    assert.equal(cp.pushBlock(f.produceBlock(lane)), 'accepted');
    assert.equal(await cp.waitVoteable(lane, 2), 'durable');
    await settle();
    assert.equal(cp.failure, undefined);
    assert.deepEqual(heard.slice(-1), [3]);
    await cp.close();
  });
});

test('a throwing CommitQC listener is reported, not fatal; later listeners still hear the QC', async () => {
  await catchingUncaught(async (thrown) => {
    const f = smallFixture(2);
    const cp = await openCp(simFs(), f);
    const boom = new Error('CommitQC listener broke its contract');
    const roads: number[] = [];
    cp.subscribeCommitQC(() => {
      throw boom;
    });
    cp.subscribeCommitQC((qc) => roads.push(qc.roadIndex));
    for (const lane of f.lanes) cp.pushBlock(f.produceBlock(lane));
    const qc0 = f.nextCommitQC();
    assert.equal(cp.pushCommitQC(qc0), 'accepted');
    assert.equal((await cp.waitCommitQC(0)).roadIndex, 0);
    await settle();
    assert.equal(cp.failure, undefined, 'persistence is not latched by a listener');
    assert.ok(thrown.includes(boom), 'the throw surfaced as an uncaught exception');
    for (const lane of f.lanes) cp.pushBlock(f.produceBlock(lane));
    const qc1 = f.nextCommitQC();
    assert.equal(cp.pushCommitQC(qc1), 'accepted');
    assert.equal((await cp.waitCommitQC(1)).roadIndex, 1);
    await settle();
    assert.equal(cp.failure, undefined);
    assert.deepEqual(roads, [0, 1], 'the listener after the throwing one heard both');
    await cp.close();
  });
});

test('a throwing onFatal is reported; the I/O failure stays the latched cause and close() still runs to the end', async () => {
  await catchingUncaught(async (thrown) => {
    const f = smallFixture(2);
    const fs = simFs();
    const boom = new Error('onFatal broke its contract');
    const fatals: Error[] = [];
    const cp = await openCp(fs, f, {
      onFatal: (err) => {
        fatals.push(err);
        throw boom;
      },
    });
    for (const lane of f.lanes) assert.equal(cp.pushBlock(f.produceBlock(lane)), 'accepted');
    // The CommitQC log's first write fails: its pipeline latches persistence and calls onFatal.
    const fault = fs.injectFault({ op: 'writev', nth: 1, error: 'EIO', pathIncludes: 'commitqcs' });
    assert.equal(cp.pushCommitQC(f.nextCommitQC()), 'accepted');
    await assert.rejects(cp.waitCommitQC(0));
    await settle();
    assert.equal(fault.firedCount, 1);
    assert.equal(fatals.length, 1, 'onFatal is called once');
    assert.ok(cp.failure !== undefined && cp.failure !== boom, 'the latched cause is the I/O error');
    assert.equal(cp.failure, fatals[0]);
    assert.ok(thrown.includes(boom), 'the throw surfaced as an uncaught exception');
    // close() reports the latched I/O failure after closing the logs and the anchor file. On
    // 9d19c22 the throw rejected the CommitQC pipeline, so close() rejected with onFatal's own error
    // before any of them was closed.
    await assert.rejects(cp.close(), (err: unknown) => {
      assert.notEqual(err, boom, "close() rejected with onFatal's throw");
      assert.ok(isCairnError(err, 'IO_FATAL'), `close() rejected with ${String(err)}`);
      return true;
    });
  });
});
