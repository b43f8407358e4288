/**
 * The group-commit scheduler on its own (no file system): who is released by which round, how
 * callers share rounds, rounds never overlap, and the microtask chain yields to the event loop.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommitScheduler, MAX_CHAINED_ROUNDS } from '../../src/wal/commitScheduler.ts';
import { immediateRoundLog } from './helpers.ts';

/** A fake log: `next` grows with appends, a round makes everything durable after `roundWork`. */
class FakeLog {
  next = 0;
  durable = 0;
  rounds = 0;
  concurrentRounds = 0;
  maxConcurrentRounds = 0;
  closed = false;
  fail: Error | undefined;
  roundWork: () => Promise<void> = async () => {};
  readonly scheduler = new CommitScheduler({
    runRound: (end) => void this.round().finally(end),
    reached: () => this.durable,
    closed: () => this.closed,
  });

  private async round(): Promise<void> {
    this.rounds++;
    this.concurrentRounds++;
    this.maxConcurrentRounds = Math.max(this.maxConcurrentRounds, this.concurrentRounds);
    const target = this.next;
    try {
      await this.roundWork();
      if (this.fail) {
        this.scheduler.rejectAll(this.fail);
        return;
      }
      this.durable = target;
      this.scheduler.settle();
    } finally {
      this.concurrentRounds--;
    }
  }

  append(): number {
    return this.next++;
  }
}

test('callers of one turn share one round; each is released only once its record is covered', async () => {
  const log = new FakeLog();
  const acks: Array<[number, number]> = [];
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      const index = log.append();
      await log.scheduler.waitFor(log.next);
      acks.push([index, log.durable]);
    }),
  );
  assert.equal(log.rounds, 1);
  for (const [index, durable] of acks) assert.ok(durable > index);
});

test('callers arriving while a round is in flight join the next round, never the running one', async () => {
  const log = new FakeLog();
  let release!: () => void;
  log.roundWork = () => new Promise<void>((r) => (release = r));
  log.append();
  const first = log.scheduler.waitFor(log.next);
  await new Promise((r) => setImmediate(r));
  assert.equal(log.rounds, 1);
  log.append();
  let secondDone = false;
  const second = log.scheduler.waitFor(log.next).then(() => (secondDone = true));
  release();
  await first;
  assert.equal(secondDone, false, 'released by a round that started before its record existed');
  log.roundWork = async () => {};
  await second;
  assert.equal(log.rounds, 2);
  assert.equal(log.maxConcurrentRounds, 1, 'rounds never overlap');
});

test('a failed round rejects every waiter with the same error', async () => {
  const log = new FakeLog();
  log.fail = new Error('EIO');
  log.append();
  const waits = [log.scheduler.waitFor(1), log.scheduler.waitFor(1)];
  for (const w of waits) await assert.rejects(w, /EIO/);
});

test('clamp lowers targets (records truncated away) and settle releases them', async () => {
  const log = new FakeLog();
  let release!: () => void;
  log.roundWork = () => new Promise<void>((r) => (release = r));
  log.next = 10;
  const wait = log.scheduler.waitFor(10);
  await new Promise((r) => setImmediate(r));
  log.durable = 4;
  log.scheduler.clamp(4);
  log.scheduler.settle();
  await wait;
  release();
});

test(`at most ${MAX_CHAINED_ROUNDS} rounds chain as microtasks before one waits for the event loop`, async () => {
  const log = new FakeLog();
  let immediateRan = false;
  setImmediate(() => (immediateRan = true));
  const roundsBeforeImmediate: number[] = [];
  log.roundWork = async () => {
    if (!immediateRan) roundsBeforeImmediate.push(log.rounds);
  };
  for (let i = 0; i < MAX_CHAINED_ROUNDS * 3; i++) {
    log.append();
    await log.scheduler.waitFor(log.next);
  }
  assert.ok(
    roundsBeforeImmediate.length <= MAX_CHAINED_ROUNDS,
    `${roundsBeforeImmediate.length} rounds ran before a pending setImmediate`,
  );
});

test('a closed host starts no round', async () => {
  const log = new FakeLog();
  log.closed = true;
  log.append();
  void log.scheduler.waitFor(1).catch(() => undefined);
  await new Promise((r) => setImmediate(r));
  assert.equal(log.rounds, 0);
  log.scheduler.rejectAll(new Error('closed'));
});

test('callback and promise callers of one turn share one round; each hears only once it is covered', async () => {
  const log = new FakeLog();
  const heard: Array<[string, number, unknown]> = [];
  const callbackAt = (name: string) => (err?: unknown) => heard.push([name, log.durable, err]);
  log.append();
  log.scheduler.waitForCallback(log.next, callbackAt('a'));
  const promised = log.scheduler.waitFor(log.next);
  log.append();
  log.scheduler.waitForCallback(log.next, callbackAt('b'));
  await promised;
  await new Promise((r) => setImmediate(r));
  assert.equal(log.rounds, 1);
  assert.deepEqual(heard, [
    ['a', 2, undefined],
    ['b', 2, undefined],
  ]);
});

test('a callback is never called synchronously, not even when its target is already reached', async () => {
  const log = new FakeLog();
  let called = false;
  log.scheduler.waitForCallback(0, () => (called = true));
  assert.equal(called, false);
  await Promise.resolve();
  assert.equal(called, true);
  assert.equal(log.rounds, 0, 'nothing to make durable: no round');
});

test('a failed round gives every callback the error; later callers of a recovered log are not affected', async () => {
  const log = new FakeLog();
  log.fail = new Error('EIO');
  const errors: unknown[] = [];
  log.append();
  log.scheduler.waitForCallback(1, (err) => errors.push(err));
  log.scheduler.waitForCallback(1, (err) => errors.push(err));
  const promised = log.scheduler.waitFor(1);
  await assert.rejects(promised, /EIO/);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(errors, [log.fail, log.fail]);
  // Pooled groups come back clean: a new caller is released by a good round, with no error.
  log.fail = undefined;
  log.append();
  const after: unknown[] = [];
  log.scheduler.waitForCallback(log.next, (err) => after.push(err ?? 'ok'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(after, ['ok']);
});

test('a caller released from a settle that runs callbacks at once may append and sync again', async () => {
  // The host settles with `now` (as the WAL does from an fsync completion) and ends its round only
  // after: the callback's new sync must be covered by a round that starts after that.
  const { log, scheduler } = immediateRoundLog(true);
  const order: string[] = [];
  log.append();
  await new Promise<void>((resolve) => {
    scheduler.waitForCallback(log.next, () => {
      order.push(`first durable ${log.durable}`);
      log.append();
      scheduler.waitForCallback(log.next, () => {
        order.push(`second durable ${log.durable}`);
        resolve();
      });
    });
  });
  assert.deepEqual(order, ['first durable 1', 'second durable 2']);
  assert.equal(log.rounds, 2);
});

test('startNow: the round starts inside the call, the callback still runs later, and a round in flight is not overlapped', async () => {
  const log = new FakeLog();
  let release!: () => void;
  log.roundWork = () => new Promise<void>((r) => (release = r));
  log.append();
  let firstDone = false;
  log.scheduler.waitForCallback(log.next, () => (firstDone = true), true);
  assert.equal(log.rounds, 1, 'the round started inside waitForCallback');
  // A second writer with startNow while the first round is in flight: it waits for the next round.
  log.append();
  let secondDone = false;
  log.scheduler.waitForCallback(log.next, () => (secondDone = true), true);
  assert.equal(log.rounds, 1, 'no second round while one is in flight');
  log.roundWork = async () => {};
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(firstDone, true);
  assert.equal(secondDone, true);
  assert.equal(log.rounds, 2);
  assert.equal(log.maxConcurrentRounds, 1, 'rounds never overlap');
  // A synchronous round: the callback is not called inside waitForCallback.
  const sync = new CommitScheduler({
    runRound: (end) => {
      syncDurable = syncNext;
      sync.settle();
      end();
    },
    reached: () => syncDurable,
    closed: () => false,
  });
  const syncNext = 1;
  let syncDurable = 0;
  let called = false;
  sync.waitForCallback(syncNext, () => (called = true), true);
  assert.equal(syncDurable, 1, 'the round ran inside the call');
  assert.equal(called, false, 'the caller hears it in a microtask, never inside its own call');
  await Promise.resolve();
  assert.equal(called, true);
});
