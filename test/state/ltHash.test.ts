// LtHash and value encodings against the spec's vectors (spec-state-store §1.5, §2.6). The roots
// must be bit-identical: they are consensus. @noble/hashes is not a dependency, so the independent
// oracle here is the spec's table itself (computed with @noble/hashes by the spec's authors).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBLAKE3 } from 'hash-wasm';
import { fromHex, toHex } from '../../src/lib/bytes.ts';
import {
  accountKey,
  encodeAccount,
  encodeCode,
  encodeMisc,
  encodeStorage,
  evmPhysicalKey,
  familyOfPhysicalKey,
  miscPhysicalKey,
  valueHeight,
} from '../../src/state/encoding.ts';
import { LtHash, LtHasher } from '../../src/state/ltHash.ts';
import { KERNEL_MAX_INPUT, LtKernel, loadLtKernel } from '../../src/state/ltKernel.ts';

const te = new TextEncoder();
const b = (s: string) => te.encode(s);

async function rootOf(rows: [Uint8Array, Uint8Array][]): Promise<string> {
  const h = await LtHasher.create();
  const acc = new LtHash();
  for (const [k, v] of rows) h.mixIn(acc, k, v);
  return toHex(h.checksum(acc));
}

const addr = fromHex(`01${'00'.repeat(19)}`);
const slot = fromHex(`01${'00'.repeat(31)}`);
const word = fromHex(`${'00'.repeat(31)}aa`);

test('LtHash: identity, serialization and pair vectors', async () => {
  const h = await LtHasher.create();
  assert.equal(
    toHex(h.checksum(new LtHash())),
    'be2a8de3dcf46c94ce85cdc8e07ac308f4d8a95490d956c38d780fd610db0813',
  );
  assert.equal(toHex(LtHasher.serializeKV(b('key'), b('value'))), '030000006b65790500000076616c7565');
  const el = h.element(b('key'), b('value'))!;
  assert.deepEqual(
    [...el.slice(0, 8)].map((x) => x.toString(16).padStart(4, '0')).join(' '),
    'a6c8 cd87 d9f3 e759 4025 74fd 0f9d 521a',
  );
  assert.equal(
    await rootOf([[b('key'), b('value')]]),
    'b3437b8894c2310230f8da14288ce6d64339735ceb01c2cf98130670288f9ae6',
  );
  assert.equal(
    await rootOf([[b('key1'), b('value1')]]),
    '7d8d872a261e0c3baf92271acb7b86f583f27db899e66b3d304be7738a0bbfda',
  );
  assert.equal(
    await rootOf([[b('key1'), b('value2')]]),
    '0089dedcb084cf9fa6b185aa14522b22d593414cacefac7d6ca29258f09e2f09',
  );
  assert.equal(
    await rootOf([
      [b('key'), b('value')],
      [b('key1'), b('value1')],
    ]),
    '7da569fc8e71dc86220e0bc4bce6190ca54f2a52a9c6913628c47d00ca2d07b1',
  );
});

test('LtHash: algebraic properties (spec §2.6 property list)', async () => {
  const h = await LtHasher.create();
  const acc = new LtHash();
  h.mixIn(acc, b('key1'), b('value1'));
  h.mixOut(acc, b('key1'), b('value1'));
  assert.ok(acc.isIdentity(), 'mix in then out returns to zero');
  assert.notEqual(await rootOf([[b('a'), b('bc')]]), await rootOf([[b('ab'), b('c')]]));
  const upd = new LtHash();
  h.mixIn(upd, b('key1'), b('value1'));
  h.mixOut(upd, b('key1'), b('value1'));
  h.mixIn(upd, b('key1'), b('value2'));
  assert.equal(toHex(h.checksum(upd)), '0089dedcb084cf9fa6b185aa14522b22d593414cacefac7d6ca29258f09e2f09');
  const empty = new LtHash();
  h.mixIn(empty, new Uint8Array(0), b('v'));
  h.mixIn(empty, b('k'), new Uint8Array(0));
  assert.ok(empty.isIdentity(), 'empty key or value is not a member');
  // Chunked sums equal the serial sum (what any parallel split relies on).
  const rows = Array.from({ length: 500 }, (_, i) => [b(`k${i}`), b(`v${i * 7}`)] as const);
  const serial = new LtHash();
  for (const [k, v] of rows) h.mixIn(serial, k, v);
  const chunks: LtHash[] = [];
  for (let c = 0; c < 10; c++) {
    const part = new LtHash();
    for (const [k, v] of rows.slice(c * 50, c * 50 + 50).reverse()) h.mixIn(part, k, v);
    chunks.push(part);
  }
  assert.ok(LtHash.sum(chunks).equals(serial));
  assert.ok(LtHash.fromBytes(serial.toBytes()).equals(serial));
});

test('value encodings: golden vectors at height 100', () => {
  const balance = new Uint8Array(32);
  balance[31] = 1;
  const compact = encodeAccount(100, { balance, nonce: 42n, codeHash: new Uint8Array(32) });
  assert.equal(
    toHex(compact),
    '0000000000000000640000000000000000000000000000000000000000000000000000000000000001000000000000002a',
  );
  const full = encodeAccount(100, { balance, nonce: 42n, codeHash: new Uint8Array(32).fill(0xaa) });
  assert.equal(toHex(full), toHex(compact) + 'aa'.repeat(32));
  assert.equal(
    toHex(encodeStorage(100, fromHex(`${'00'.repeat(30)}dead`))),
    `000000000000000064${'00'.repeat(30)}dead`,
  );
  assert.equal(toHex(encodeCode(100, fromHex('6080604052'))), '0000000000000000646080604052');
  assert.equal(toHex(encodeMisc(100, fromHex('cafebabe'))), '000000000000000064cafebabe');
});

test('value encodings: the height header is big-endian u64 across the 32-bit boundary', () => {
  for (const h of [0, 1, 0xff, 0x1_0000, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
    const expected = new Uint8Array(9);
    new DataView(expected.buffer).setBigUint64(1, BigInt(h), false);
    for (const v of [encodeStorage(h, word), encodeCode(h, b('c')), encodeMisc(h, b('m'))]) {
      assert.equal(toHex(v.subarray(0, 9)), toHex(expected), `height ${h}`);
      assert.equal(valueHeight('storage', v), h);
    }
  }
});

test('store-root vectors (spec §2.6): storage, height stamping, account, code, misc', async () => {
  const storageKey = evmPhysicalKey(0x03, new Uint8Array([...addr, ...slot]));
  assert.equal(storageKey.length, 57);
  assert.equal(familyOfPhysicalKey(storageKey), 'storage');
  assert.equal(
    await rootOf([[storageKey, encodeStorage(1, word)]]),
    'c382cdfe1fb14ee8d33a5a6514cc5f15ea7fbcb8684226155880791fbc26fdb4',
  );
  assert.equal(
    await rootOf([[storageKey, encodeStorage(2, word)]]),
    '574c86364d6ffe71ecd741f506979150d472c0592cf3a3233480c2752220ac97',
  );
  const acct = encodeAccount(1, { balance: new Uint8Array(32), nonce: 1n, codeHash: new Uint8Array(32) });
  assert.equal(acct.length, 49);
  assert.equal(familyOfPhysicalKey(accountKey(addr)), 'account');
  assert.equal(
    await rootOf([
      [storageKey, encodeStorage(1, word)],
      [accountKey(addr), acct],
    ]),
    '0987ebbb926484f07b494052af3c5cb2911b439c02c3ca68bc6d3d6d779644a4',
  );
  const codeKey = evmPhysicalKey(0x07, addr);
  assert.equal(toHex(encodeCode(1, fromHex('6080'))), '0000000000000000016080');
  assert.equal(
    await rootOf([[codeKey, encodeCode(1, fromHex('6080'))]]),
    '8ef3ead6732b1b2a1abeccb5ab05b672567e18548164574412492d10af9768b3',
  );
  const miscKey = miscPhysicalKey('bank', b('k'));
  assert.equal(toHex(miscKey), '62616e6b2f6b');
  assert.equal(familyOfPhysicalKey(miscKey), 'misc');
  assert.equal(
    await rootOf([[miscKey, encodeMisc(1, b('v'))]]),
    'e1693de29b81ddb1a3bb3eedcfd8bc53d1e698023ce80150dba79238b5f4611d',
  );
});

test('SIMD element kernel: every input length 1..1024 equals hash-wasm BLAKE3-XOF, added and subtracted', async () => {
  const module = await loadLtKernel();
  assert.ok(module, 'the kernel compiles and passes its own probe here');
  const kernel = await LtKernel.instantiate(module);
  const reference = await createBLAKE3(2048 * 8);
  const acc = new Uint32Array(512);
  for (let length = 1; length <= KERNEL_MAX_INPUT; length++) {
    const input = new Uint8Array(length);
    for (let i = 0; i < length; i++) input[i] = (i * 29 + length * 3 + 5) & 0xff;
    reference.init();
    reference.update(input);
    const element = new Uint16Array(reference.digest('binary').slice().buffer);
    const slot = length % 4;
    // Start from a non-zero accumulator so carries between limbs would show.
    for (let i = 0; i < 512; i++) acc[i] = Math.imul(i + length, 0x9e3779b1) >>> 0;
    kernel.slot(slot).set(acc);
    // Garbage after the input must not leak into the hash (the kernel pads with zeros).
    kernel.input.fill(0xa5);
    kernel.input.set(input);
    kernel.mix(length, slot, 1);
    const got = new Uint16Array(kernel.slot(slot).slice().buffer);
    const before = new Uint16Array(acc.buffer);
    for (let i = 0; i < 1024; i++) {
      if (got[i] !== ((before[i]! + element[i]!) & 0xffff))
        assert.fail(`length ${length}: limb ${i} differs`);
    }
    kernel.input.set(input);
    kernel.mix(length, slot, -1);
    assert.deepEqual(kernel.slot(slot), acc, `length ${length}: add then subtract is the identity`);
  }
});
