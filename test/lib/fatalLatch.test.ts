import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CairnError, FatalLatch } from '../../src/lib/errors.ts';

test('passCallerErrors: a caller error passes through and leaves the latch open', () => {
  const latch = new FatalLatch();
  const bad = new CairnError('INVALID_ARGUMENT', 'bad input');
  assert.equal(latch.passCallerErrors(bad, 'writing'), bad);
  assert.equal(latch.error, undefined);
  latch.check();
});

test('passCallerErrors: anything else latches, and every later call sees the first error', () => {
  const latch = new FatalLatch();
  const eio = Object.assign(new Error('disk gone'), { code: 'EIO' });
  const first = latch.passCallerErrors(eio, 'writing x');
  assert.equal(first.code, 'IO_FATAL');
  assert.equal(first.cause, eio);
  assert.match(first.message, /writing x failed \(EIO\)/);
  const corrupt = new CairnError('CORRUPT', 'later');
  assert.equal(latch.passCallerErrors(corrupt, 'writing y'), first);
  assert.throws(
    () => latch.check(),
    (err) => err === first,
  );
  // Once latched, a caller error still reports itself (it changed nothing); the latch stays.
  const bad = new CairnError('OUT_OF_RANGE', 'bad');
  assert.equal(latch.passCallerErrors(bad, 'writing'), bad);
  assert.equal(latch.error, first);
});

test('passCallerErrors: caller codes named in alsoLatch latch like I/O failures', () => {
  const latch = new FatalLatch();
  const closed = new CairnError('CLOSED', 'log closed under a write');
  const latched = latch.passCallerErrors(closed, 'persisting lane', ['CLOSED']);
  assert.equal(latched.code, 'IO_FATAL');
  assert.equal(latched.cause, closed);
  assert.equal(latch.error, latched);
  const fatal = new FatalLatch();
  const corrupt = new CairnError('CORRUPT', 'bad record');
  assert.equal(fatal.passCallerErrors(corrupt, 'reading'), corrupt, 'a fatal CairnError latches as itself');
});
