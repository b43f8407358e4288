import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { sha256Into } from '../../src/lib/sha256.ts';

const reference = (input: Uint8Array) => new Uint8Array(createHash('sha256').update(input).digest());

test('sha256Into matches node:crypto for every length across the padding boundaries', () => {
  const seed = seedFromEnv();
  console.log(`sha256 seed ${seed} (replay with CAIRN_SEED=${seed})`);
  const rng = new Rng(seed);
  const out = new Uint8Array(48);
  // 0..300 covers one, two and three padded blocks, and the 55/56/63/64-byte edges.
  for (let length = 0; length <= 300; length++) {
    for (let k = 0; k < 3; k++) {
      // A view at an odd offset of a larger buffer: the input's own offset must be honoured.
      const backing = rng.bytes(length + 11);
      const input = backing.subarray(5, 5 + length);
      out.fill(0xaa);
      sha256Into(input, out, 7);
      assert.deepEqual(out.subarray(7, 39), reference(input), `length ${length}`);
      // Bytes outside the 32-byte target are untouched.
      assert.ok(out.subarray(0, 7).every((b) => b === 0xaa));
      assert.ok(out.subarray(39).every((b) => b === 0xaa));
    }
  }
});

test('sha256Into: known vectors, and too little room is refused before anything is written', () => {
  const out = new Uint8Array(32);
  sha256Into(new TextEncoder().encode('abc'), out);
  assert.equal(
    Buffer.from(out).toString('hex'),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
  sha256Into(new Uint8Array(0), out);
  assert.equal(
    Buffer.from(out).toString('hex'),
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  );
  // A prefix of a larger buffer: only `length` bytes count.
  const longer = new TextEncoder().encode('abcdef');
  sha256Into(longer, out, 0, 3);
  assert.equal(
    Buffer.from(out).toString('hex'),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
  assert.throws(() => sha256Into(longer, out, 0, 7), RangeError);
  const small = new Uint8Array(40).fill(1);
  assert.throws(() => sha256Into(new Uint8Array(3), small, 9), RangeError);
  assert.ok(small.every((b) => b === 1));
});
