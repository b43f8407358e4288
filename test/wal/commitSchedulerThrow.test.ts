/**
 * A `syncThen` / `waitForCallback` callback that throws (a contract breach by the caller) must not
 * strand the other callers of its round: every callback and promise of the round still hears the
 * outcome, the log keeps working, and the throw itself is not swallowed (it surfaces as an uncaught
 * exception). Without that, an app that survives the throw through an uncaughtException handler
 * would wait forever on the callers after the one that threw.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommitScheduler } from '../../src/wal/commitScheduler.ts';
import { catchingUncaught } from '../support/uncaught.ts';
import { immediateRoundLog } from './helpers.ts';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

for (const settleNow of [false, true]) {
  test(`a throwing callback does not stop its round's other callers (${settleNow ? 'settled at once' : 'released in a microtask'})`, async () => {
    await catchingUncaught(async (thrown) => {
      const { log, scheduler } = immediateRoundLog(settleNow);
      const heard: string[] = [];
      const boom = new Error('callback broke its contract');
      log.next = 1;
      scheduler.waitForCallback(1, () => heard.push('a'));
      scheduler.waitForCallback(1, () => {
        heard.push('b');
        throw boom;
      });
      scheduler.waitForCallback(1, () => heard.push('c'));
      scheduler.waitForCallback(1, () => heard.push('d'));
      const promised = scheduler.waitFor(1).then(() => heard.push('promise'));
      await promised;
      await turn();
      assert.deepEqual(heard, ['a', 'b', 'c', 'd', 'promise'], 'every caller of the round heard it');
      assert.deepEqual(thrown, [boom], 'the throw surfaced once, as an uncaught exception');
      assert.equal(log.rounds, 1);

      // The scheduler is still usable: a later caller gets a round and is released.
      log.next = 2;
      await new Promise<void>((resolve) => scheduler.waitForCallback(2, () => resolve()));
      assert.equal(log.durable, 2);
      assert.equal(log.rounds, 2);
    });
  });
}

test('a throwing callback on a failed round: the others still receive the error', async () => {
  await catchingUncaught(async (thrown) => {
    const failure = new Error('fsync failed');
    const scheduler = new CommitScheduler({
      runRound: (end) =>
        setImmediate(() => {
          scheduler.rejectAll(failure);
          end();
        }),
      reached: () => 0,
      closed: () => false,
    });
    const errors: unknown[] = [];
    scheduler.waitForCallback(1, (err) => {
      errors.push(err);
      throw new Error('first caller broke');
    });
    scheduler.waitForCallback(1, (err) => errors.push(err));
    await assert.rejects(scheduler.waitFor(1), (err) => err === failure);
    await turn();
    assert.deepEqual(errors, [failure, failure]);
    assert.equal(thrown.length, 1);
    assert.match(String(thrown[0]), /first caller broke/);
  });
});
