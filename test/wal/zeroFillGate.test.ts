import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runZeroFillSlice } from '../../src/wal/zeroFillGate.ts';

test('zero-fill slices of all logs run one at a time, in arrival order, and a failing slice frees the gate', async () => {
  let running = 0;
  let maxRunning = 0;
  const order: string[] = [];
  const releases = new Map<string, () => void>();
  const slice = (name: string, fail = false) =>
    runZeroFillSlice(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      order.push(name);
      await new Promise<void>((resolve) => releases.set(name, resolve));
      running--;
      if (fail) throw new Error(`slice ${name} failed`);
      return name;
    });
  const a = slice('a');
  const b = slice('b', true);
  const c = slice('c');
  const settle = () => new Promise((r) => setImmediate(r));
  await settle();
  assert.deepEqual(order, ['a'], 'only the first slice started');
  releases.get('a')!();
  assert.equal(await a, 'a');
  await settle();
  assert.deepEqual(order, ['a', 'b']);
  releases.get('b')!();
  await assert.rejects(b, /slice b failed/);
  await settle();
  assert.deepEqual(order, ['a', 'b', 'c'], 'the failure released the gate');
  releases.get('c')!();
  assert.equal(await c, 'c');
  assert.equal(maxRunning, 1);
  // Idle again: a new slice starts at once.
  assert.equal(await runZeroFillSlice(async () => 'd'), 'd');
});
