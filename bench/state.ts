/**
 * State store benchmark: `npm run bench -- state [--quick]`.
 *
 * 1. Throughput: the peer-baselines §A workload (blocks of 5,000 distinct changed keys, 80 % storage
 *    slots across 2,000 Zipf-chosen contracts, 20 % account updates over 50,000 Zipf-chosen EOAs and
 *    the contracts; seeded, generated before timing). Cairn commits every block durably (state WAL
 *    fsync per block, one LevelDB batch). Reported: changed keys/s, per-block p50/p99, and the split
 *    apply (old-value reads + LtHash) / commit (WAL fsync; the engine batch of block h is written
 *    behind that ack, while block h+1 is applied). The clock stops after the last block's engine
 *    batch is written too (`engineWritten()`), so no work is left outside the timed span.
 * 2. Same-run peer: @ethereumjs/mpt 10.1.3 in the Ethereum layout (secure account trie, one secure
 *    storage trie per contract), tuned as peer-baselines §A describes (hash-wasm keccak for keys and
 *    nodes, LRU node cache 200,000 / 2,000, getSync in the LevelDB adapter, one batch per block).
 *    Installed by this bench into .bench-tmp/peers (never a product dependency). It runs fewer blocks
 *    than Cairn (it is ~20x slower); its per-block cost grows with the state, so fewer blocks favour it.
 * 3. Snapshot stall at 1M keys (--quick: 300k): the state is committed in blocks of 50,000 new slots, a few workload blocks on top, then snapshots
 *    are taken; the stall is the time commits are blocked (synced checkpoint + engine close, hard
 *    links, copies, reopen).
 * 4. Full-scan verify rate over that state.
 * Also: the throughput run repeated with hashWorkers 0 (all LtHash work on the writer thread; the
 * store's default, used by runs 1 and 2, is `suggestedHashWorkers()` = cores − 1, at most 3, which
 * share the hashing with the writer), and a direct measurement of 10,000 element hashes on the main
 * thread versus split over two workers, so the worker-thread question is answered per machine, in
 * the same run.
 * Warm-up (discarded, so that JIT compilation is paid outside the timed runs on both sides): before
 * the timed runs, one 4-block Cairn run per hashWorkers configuration and one 2-block peer run, each
 * in its own scratch directory. The peer's warm-up is shorter because each of its blocks takes ~20×
 * longer; two blocks exercise every code path of its block loop.
 * Last line: the JSON summary of DESIGN.md §5.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ClassicLevel } from 'classic-level';
import { createKeccak } from 'hash-wasm';
import { Rng } from '../src/lib/rng.ts';
import { LtHash, sharedLtHasher } from '../src/state/ltHash.ts';
import { type NamedChangeSet, StateStore, suggestedHashWorkers } from '../src/state/stateStore.ts';
import { fmt, median, nowMs, percentile, round3 } from './support/stats.ts';

const KEYS_PER_BLOCK = 5000;
const CONTRACTS = 2000;
const EOAS = 50_000;
const CODE_HASH = new Uint8Array(32).fill(0xc0);
const TMP = resolve('.bench-tmp');

// ---- workload (peer-baselines §A) ------------------------------------------------------------

class Zipf {
  private readonly cdf: Float64Array;
  constructor(n: number, s: number) {
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      sum += 1 / (i + 1) ** s;
      this.cdf[i] = sum;
    }
    for (let i = 0; i < n; i++) this.cdf[i]! /= sum;
  }
  sample(rng: Rng): number {
    const u = rng.next();
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

interface StorageWrite {
  contract: number;
  slot: Uint8Array;
  value: Uint8Array;
}
interface AccountWrite {
  /** Index: < CONTRACTS is a contract, else an EOA. */
  account: number;
  nonce: bigint;
  balance: bigint;
}
interface Block {
  storage: StorageWrite[];
  accounts: AccountWrite[];
}

function address(account: number): Uint8Array {
  const a = new Uint8Array(20);
  a[0] = account < CONTRACTS ? 0xcc : 0xee;
  new DataView(a.buffer).setUint32(16, account, false);
  new DataView(a.buffer).setUint32(8, Math.imul(account, 0x9e3779b1) >>> 0, false);
  return a;
}

export function makeWorkload(blocks: number, seed: number): Block[] {
  const rng = new Rng(seed);
  const contractZipf = new Zipf(CONTRACTS, 1.0);
  const eoaZipf = new Zipf(EOAS, 0.8);
  const slots: Uint8Array[][] = Array.from({ length: CONTRACTS }, () => []);
  const nonces = new Map<number, bigint>();
  const out: Block[] = [];
  for (let b = 0; b < blocks; b++) {
    const storage: StorageWrite[] = [];
    const seen = new Set<string>();
    while (storage.length < KEYS_PER_BLOCK * 0.8) {
      const c = contractZipf.sample(rng);
      const list = slots[c]!;
      let slot: Uint8Array;
      if (list.length === 0 || rng.bool(0.35)) {
        slot = rng.bytes(32);
        list.push(slot);
      } else {
        slot = list[Math.floor(list.length * rng.next() ** 3)]!;
      }
      const id = `${c}:${Buffer.from(slot).toString('hex')}`;
      if (seen.has(id)) continue;
      seen.add(id);
      let value: Uint8Array;
      if (rng.bool()) {
        value = new Uint8Array(32);
        new DataView(value.buffer).setBigUint64(
          24,
          BigInt(rng.nextU32()) * 4294967296n + BigInt(rng.nextU32()) + 1n,
        );
      } else {
        value = rng.bytes(32);
        value[0] = value[0]! | 1;
      }
      storage.push({ contract: c, slot, value });
    }
    const accounts: AccountWrite[] = [];
    const seenAccounts = new Set<number>();
    while (accounts.length < KEYS_PER_BLOCK * 0.2) {
      const a = rng.bool(0.9) ? CONTRACTS + eoaZipf.sample(rng) : contractZipf.sample(rng);
      if (seenAccounts.has(a)) continue;
      seenAccounts.add(a);
      const nonce = (nonces.get(a) ?? 0n) + 1n;
      nonces.set(a, nonce);
      const balance = (BigInt(rng.nextU32()) << 64n) | (BigInt(rng.nextU32()) << 32n) | BigInt(rng.nextU32());
      accounts.push({ account: a, nonce, balance });
    }
    out.push({ storage, accounts });
  }
  return out;
}

/** The block as Cairn changesets: storage slots, nonces, and the code hash on a contract's first touch. */
function toChangeSets(block: Block, seenContracts: Set<number>): NamedChangeSet[] {
  const pairs: NamedChangeSet['pairs'][number][] = [];
  for (const w of block.storage) {
    pairs.push({ key: new Uint8Array([0x03, ...address(w.contract), ...w.slot]), value: w.value });
  }
  for (const a of block.accounts) {
    const addr = address(a.account);
    const nonce = new Uint8Array(8);
    new DataView(nonce.buffer).setBigUint64(0, a.nonce, false);
    pairs.push({ key: new Uint8Array([0x0a, ...addr]), value: nonce });
    if (a.account < CONTRACTS && !seenContracts.has(a.account)) {
      seenContracts.add(a.account);
      pairs.push({ key: new Uint8Array([0x08, ...addr]), value: CODE_HASH });
    }
  }
  return [{ name: 'evm', pairs }];
}

// ---- Cairn -----------------------------------------------------------------------------------

interface RunResult {
  keysPerSec: number;
  blockMs: number[];
  applyMs: number[];
  commitMs: number[];
  root: string;
}

/** `hashWorkers` undefined: the store's default (`suggestedHashWorkers()`). */
export async function runCairn(workload: Block[], hashWorkers?: number): Promise<RunResult> {
  const dir = mkdtempSync(join(TMP, 'state-cairn-'));
  try {
    const store = await StateStore.open({
      dataDir: dir,
      snapshotIntervalBlocks: 0,
      checkpointIntervalBlocks: 64,
      ...(hashWorkers === undefined ? {} : { hashWorkers }),
    });
    const seen = new Set<number>();
    const changeSets = workload.map((b) => toChangeSets(b, seen));
    const blockMs: number[] = [];
    const applyMs: number[] = [];
    const commitMs: number[] = [];
    let keys = 0;
    const started = nowMs();
    for (let i = 0; i < workload.length; i++) {
      const t0 = nowMs();
      await store.applyChangeSets(i + 1, changeSets[i]!);
      const t1 = nowMs();
      await store.commit(i + 1);
      const t2 = nowMs();
      applyMs.push(t1 - t0);
      commitMs.push(t2 - t1);
      blockMs.push(t2 - t0);
      keys += workload[i]!.storage.length + workload[i]!.accounts.length;
    }
    // The last block's engine batch is written behind its WAL ack: the clock stops after it too.
    await store.engineWritten();
    const elapsed = nowMs() - started;
    const root = Buffer.from(store.committedRoot()).toString('hex');
    await store.close();
    return { keysPerSec: (keys / elapsed) * 1000, blockMs, applyMs, commitMs, root };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- @ethereumjs/mpt, tuned --------------------------------------------------------------------

const PEER_PACKAGES = ['@ethereumjs/mpt@10.1.3', '@ethereumjs/util@10.1.3', '@ethereumjs/rlp@10.1.3'];

/** Installs the peer outside the product's dependencies (first use only). */
function ensurePeers(): string {
  const prefix = join(TMP, 'peers');
  if (!existsSync(join(prefix, 'node_modules', '@ethereumjs', 'mpt', 'package.json'))) {
    mkdirSync(prefix, { recursive: true });
    if (!existsSync(join(prefix, 'package.json'))) {
      writeFileSync(join(prefix, 'package.json'), '{"name":"cairn-bench-peers","private":true}\n');
    }
    console.log(`installing ${PEER_PACKAGES.join(' ')} into ${prefix} (bench only, --no-save)`);
    execFileSync(
      'npm',
      ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', ...PEER_PACKAGES],
      {
        cwd: prefix,
        stdio: 'inherit',
      },
    );
  }
  return prefix;
}

async function importPeer<T>(prefix: string, name: string): Promise<T> {
  const req = createRequire(join(prefix, 'package.json'));
  let entry: string;
  try {
    entry = req.resolve(name);
  } catch {
    entry = join(prefix, 'node_modules', name, 'dist', 'esm', 'index.js');
  }
  return (await import(pathToFileURL(entry).href)) as T;
}

/**
 * LevelDB adapter in the style of @ethereumjs/client's: hex-string keys stored as utf8, byte values.
 * Tuned: synchronous getSync; every write of a block is buffered and goes out as ONE batch.
 */
class BlockBufferedDb {
  readonly pending = new Map<string, Uint8Array | undefined>();
  constructor(readonly db: ClassicLevel<string, Uint8Array>) {}
  async get(key: string): Promise<Uint8Array | undefined> {
    if (this.pending.has(key)) return this.pending.get(key);
    return this.db.getSync(key) ?? undefined;
  }
  async put(key: string, value: Uint8Array): Promise<void> {
    this.pending.set(key, value);
  }
  async del(key: string): Promise<void> {
    this.pending.set(key, undefined);
  }
  async batch(ops: { type: 'put' | 'del'; key: string; value?: Uint8Array }[]): Promise<void> {
    for (const op of ops) this.pending.set(op.key, op.type === 'put' ? op.value : undefined);
  }
  shallowCopy(): BlockBufferedDb {
    return this;
  }
  async open(): Promise<void> {}
  async flush(): Promise<void> {
    const b = this.db.batch();
    for (const [k, v] of this.pending) {
      if (v === undefined) b.del(k);
      else b.put(k, v);
    }
    this.pending.clear();
    await b.write({ sync: false });
  }
}

async function runMpt(workload: Block[]): Promise<RunResult> {
  const prefix = ensurePeers();
  // biome-ignore lint/suspicious/noExplicitAny: dynamically loaded peer packages without types here
  const mpt = await importPeer<any>(prefix, '@ethereumjs/mpt');
  // biome-ignore lint/suspicious/noExplicitAny: idem
  const rlp = await importPeer<any>(prefix, '@ethereumjs/rlp');
  // biome-ignore lint/suspicious/noExplicitAny: idem
  const util = await importPeer<any>(prefix, '@ethereumjs/util');
  const keccak = await createKeccak(256);
  const hash = (msg: Uint8Array): Uint8Array => {
    keccak.init();
    keccak.update(msg);
    return keccak.digest('binary');
  };
  const dir = mkdtempSync(join(TMP, 'state-mpt-'));
  const level = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await level.open();
  const db = new BlockBufferedDb(level);
  try {
    const common = {
      useKeyHashing: true,
      useKeyHashingFunction: hash,
      valueEncoding: util.ValueEncoding.Bytes,
    };
    const accountTrie = await mpt.createMPT({ ...common, db, cacheSize: 200_000 });
    const storageTries = new Map<number, { trie: unknown; root: Uint8Array }>();
    const accounts = new Map<number, { nonce: bigint; balance: bigint; storageRoot: Uint8Array }>();
    const emptyRoot = accountTrie.root();
    const blockMs: number[] = [];
    let keys = 0;
    const started = nowMs();
    for (const block of workload) {
      const t0 = nowMs();
      const byContract = new Map<number, StorageWrite[]>();
      for (const w of block.storage) {
        const list = byContract.get(w.contract) ?? [];
        list.push(w);
        byContract.set(w.contract, list);
      }
      const touched = new Set<number>();
      for (const [c, writes] of byContract) {
        let st = storageTries.get(c);
        if (!st) {
          st = { trie: await mpt.createMPT({ ...common, db, cacheSize: 2000 }), root: emptyRoot };
          storageTries.set(c, st);
        }
        // biome-ignore lint/suspicious/noExplicitAny: peer trie
        const trie = st.trie as any;
        trie.checkpoint();
        for (const w of writes) {
          let i = 0;
          while (i < 31 && w.value[i] === 0) i++;
          await trie.put(w.slot, rlp.RLP.encode(w.value.subarray(i)));
        }
        await trie.commit();
        st.root = trie.root();
        touched.add(c);
      }
      accountTrie.checkpoint();
      for (const a of block.accounts) {
        const acct = accounts.get(a.account) ?? { nonce: 0n, balance: 0n, storageRoot: emptyRoot };
        acct.nonce = a.nonce;
        acct.balance = a.balance;
        accounts.set(a.account, acct);
        touched.add(a.account);
      }
      for (const a of touched) {
        const acct = accounts.get(a) ?? { nonce: 0n, balance: 0n, storageRoot: emptyRoot };
        accounts.set(a, acct);
        if (a < CONTRACTS) acct.storageRoot = storageTries.get(a)?.root ?? emptyRoot;
        const codeHash = a < CONTRACTS ? CODE_HASH : hash(new Uint8Array(0));
        await accountTrie.put(
          address(a),
          rlp.RLP.encode([
            util.bigIntToUnpaddedBytes(acct.nonce),
            util.bigIntToUnpaddedBytes(acct.balance),
            acct.storageRoot,
            codeHash,
          ]),
        );
      }
      await accountTrie.commit();
      accountTrie.root();
      await db.flush();
      blockMs.push(nowMs() - t0);
      keys += block.storage.length + block.accounts.length;
    }
    const elapsed = nowMs() - started;
    return {
      keysPerSec: (keys / elapsed) * 1000,
      blockMs,
      applyMs: [],
      commitMs: [],
      root: Buffer.from(accountTrie.root()).toString('hex'),
    };
  } finally {
    await level.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- 1M-key snapshot stall and verify --------------------------------------------------------

/** Blocks of `perBlock` brand-new storage slots (the fastest honest way to a large committed state). */
function bulkBlock(first: number, count: number): NamedChangeSet[] {
  const pairs: NamedChangeSet['pairs'][number][] = [];
  for (let i = first; i < first + count; i++) {
    const key = new Uint8Array(53);
    key[0] = 0x03;
    key.fill(0x5a, 1, 21);
    new DataView(key.buffer).setUint32(17, Math.floor(i / 500), false);
    new DataView(key.buffer).setUint32(49, i % 500, false);
    const value = new Uint8Array(32);
    new DataView(value.buffer).setUint32(28, i + 1, false);
    pairs.push({ key, value });
  }
  return [{ name: 'evm', pairs }];
}

async function runSnapshotAndVerify(rows: number, workload: Block[]) {
  const dir = mkdtempSync(join(TMP, 'state-snap-'));
  try {
    const store = await StateStore.open({
      dataDir: dir,
      snapshotIntervalBlocks: 0,
      checkpointIntervalBlocks: 64,
    });
    const t0 = nowMs();
    const perBlock = 50_000;
    let h = 0;
    for (let first = 0; first < rows; first += perBlock) {
      h++;
      await store.commitBlock(h, bulkBlock(first, Math.min(perBlock, rows - first)));
    }
    const importMs = nowMs() - t0;
    const seen = new Set<number>();
    const stalls: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) {
        h++;
        await store.commitBlock(h, toChangeSets(workload[h % workload.length]!, seen));
      }
      const r = await store.snapshot();
      stalls.push(r.stallMs);
      console.log(
        `  snapshot at ${r.height}: stall ${fmt(r.stallMs, 1)} ms ${JSON.stringify(
          Object.fromEntries(Object.entries(r.phasesMs ?? {}).map(([k, v]) => [k, Math.round(v * 10) / 10])),
        )}, ${r.files} files`,
      );
    }
    const v0 = nowMs();
    const report = await store.verify();
    const verifyMs = nowMs() - v0;
    const scanned = report.families.reduce((s, f) => s + f.rows, 0);
    if (!report.ok) throw new Error(`verify failed: ${JSON.stringify(report.families.filter((f) => !f.ok))}`);
    await store.close();
    return { importMs, stalls, verifyMs, scanned };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- worker threads: does splitting the LtHash over both cores pay? ------------------------------

/**
 * The same 10,000 element hashes (57-byte keys, 41-byte values: a storage row) summed on the main
 * thread, and split over two worker threads (each with its own hash-wasm BLAKE3; inputs packed into
 * one transferable buffer per worker, partial sums added on return). Medians of 5 rounds.
 */
async function measureHashSplit(): Promise<{ singleMs: number; twoWorkersMs: number }> {
  const { Worker } = await import('node:worker_threads');
  const hashWasm = pathToFileURL(createRequire(import.meta.url).resolve('hash-wasm')).href;
  const code = `
    import { parentPort } from 'node:worker_threads';
    import { createBLAKE3 } from ${JSON.stringify(hashWasm)};
    const x = await createBLAKE3(16384);
    parentPort.on('message', ({ buf, offsets }) => {
      const acc = new Uint16Array(1024);
      for (let i = 0; i + 1 < offsets.length; i++) {
        x.init(); x.update(buf.subarray(offsets[i], offsets[i + 1]));
        const d = x.digest('binary'); const l = new Uint16Array(d.buffer, d.byteOffset, 1024);
        for (let j = 0; j < 1024; j++) acc[j] += l[j];
      }
      parentPort.postMessage(acc, [acc.buffer]);
    });`;
  const workers = [0, 1].map(() => new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`)));
  const rng = new Rng(77);
  const n = 10_000;
  const keys = Array.from({ length: n }, () => rng.bytes(57));
  const values = Array.from({ length: n }, () => rng.bytes(41));
  const pack = (from: number, to: number) => {
    const parts: Uint8Array[] = [];
    const offsets = [0];
    for (let i = from; i < to; i++) {
      const o = new Uint8Array(8 + 57 + 41);
      const dv = new DataView(o.buffer);
      dv.setUint32(0, 57, true);
      o.set(keys[i]!, 4);
      dv.setUint32(61, 41, true);
      o.set(values[i]!, 65);
      parts.push(o);
      offsets.push(offsets.at(-1)! + o.length);
    }
    return { buf: Buffer.concat(parts), offsets };
  };
  const ask = (i: number, m: { buf: Uint8Array; offsets: number[] }) =>
    new Promise<Uint16Array>((r) => {
      workers[i]!.once('message', r);
      workers[i]!.postMessage(m);
    });
  const hasher = await sharedLtHasher();
  const single: number[] = [];
  const split: number[] = [];
  try {
    await Promise.all([ask(0, pack(0, 10)), ask(1, pack(0, 10))]);
    for (let r = 0; r < 5; r++) {
      const t0 = nowMs();
      const acc = new LtHash();
      for (let i = 0; i < n; i++) hasher.mixIn(acc, keys[i]!, values[i]!);
      const t1 = nowMs();
      const [a, b] = await Promise.all([ask(0, pack(0, n / 2)), ask(1, pack(n / 2, n))]);
      const acc2 = new LtHash();
      acc2.add(a);
      acc2.add(b);
      const t2 = nowMs();
      if (!acc.equals(acc2)) throw new Error('worker split disagrees with the single-thread sum');
      single.push(t1 - t0);
      split.push(t2 - t1);
    }
  } finally {
    for (const w of workers) await w.terminate();
  }
  return { singleMs: median(single), twoWorkersMs: median(split) };
}

// ---- main ------------------------------------------------------------------------------------

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const cairnBlocks = quick ? 40 : 100;
  const mptBlocks = quick ? 5 : 25;
  const snapshotRows = quick ? 300_000 : 1_000_000;
  mkdirSync(TMP, { recursive: true });
  const workload = makeWorkload(cairnBlocks, 0x5eed5);
  console.log(
    `state bench (${quick ? 'quick' : 'full'}): ${cairnBlocks} blocks × ${KEYS_PER_BLOCK} changed keys`,
  );

  // Warm-up (discarded): the first run in a process also pays for JIT compilation, which would
  // penalize whichever configuration is measured first.
  await runCairn(workload.slice(0, 4), 0);
  await runCairn(workload.slice(0, 4));
  const cairn = await runCairn(workload);
  const defaultWorkers = suggestedHashWorkers();
  console.log(
    `cairn (default: hashWorkers ${defaultWorkers})  ${fmt(cairn.keysPerSec)} keys/s  block p50 ${fmt(median(cairn.blockMs), 1)} ms  p99 ${fmt(percentile(cairn.blockMs, 0.99), 1)} ms  ` +
      `(apply p50 ${fmt(median(cairn.applyMs), 1)} ms = reads + LtHash, beside the previous engine batch; commit p50 ${fmt(median(cairn.commitMs), 1)} ms = WAL fsync)`,
  );
  const cairnNoWorkers = await runCairn(workload, 0);
  console.log(
    `cairn, hashWorkers 0 (all LtHash work on the writer thread)  ${fmt(cairnNoWorkers.keysPerSec)} keys/s  block p50 ${fmt(median(cairnNoWorkers.blockMs), 1)} ms  ` +
      `p99 ${fmt(percentile(cairnNoWorkers.blockMs, 0.99), 1)} ms  (same root: ${cairnNoWorkers.root === cairn.root})`,
  );
  if (cairnNoWorkers.root !== cairn.root)
    throw new Error('the run without hash workers produced a different root');
  // Same blocks for the peer (the first mptBlocks of the workload) and Cairn on exactly those.
  const cairnSame = await runCairn(workload.slice(0, mptBlocks));
  await runMpt(workload.slice(0, 2)); // warm-up, discarded (see the header)
  const mpt = await runMpt(workload.slice(0, mptBlocks));
  console.log(
    `mpt-tuned    ${fmt(mpt.keysPerSec)} keys/s  block p50 ${fmt(median(mpt.blockMs), 1)} ms  p99 ${fmt(percentile(mpt.blockMs, 0.99), 1)} ms  (${mptBlocks} blocks)`,
  );
  console.log(`cairn (same ${mptBlocks} blocks) ${fmt(cairnSame.keysPerSec)} keys/s`);

  const split = await measureHashSplit();
  console.log(
    `LtHash of 10,000 rows: main thread ${fmt(split.singleMs, 1)} ms, split over 2 workers ${fmt(split.twoWorkersMs, 1)} ms ` +
      `(${split.twoWorkersMs < split.singleMs ? 'workers pay' : 'workers do not pay here'})`,
  );

  const snap = await runSnapshotAndVerify(snapshotRows, workload);
  const stall = median(snap.stalls);
  const verifyKeysPerSec = (snap.scanned / snap.verifyMs) * 1000;
  console.log(
    `${fmt(snapshotRows)}-key state: built in ${fmt(snap.importMs)} ms; snapshot stall ${snap.stalls.map((s) => fmt(s, 1)).join(' / ')} ms (median ${fmt(stall, 1)}); ` +
      `verify ${fmt(snap.scanned)} rows in ${fmt(snap.verifyMs)} ms = ${fmt(verifyKeysPerSec)} keys/s`,
  );
  const summary = {
    bench: 'state',
    metrics: {
      changedKeysPerSec: Math.round(cairn.keysPerSec),
      suggestedHashWorkers: suggestedHashWorkers(),
      changedKeysPerSecNoHashWorkers: Math.round(cairnNoWorkers.keysPerSec),
      commitP50Ms: round3(median(cairn.blockMs)),
      commitP99Ms: round3(percentile(cairn.blockMs, 0.99)),
      applyP50Ms: round3(median(cairn.applyMs)),
      walAndBatchP50Ms: round3(median(cairn.commitMs)),
      snapshotStallMs: round3(stall),
      verifyKeysPerSec: Math.round(verifyKeysPerSec),
      buildStateMs: Math.round(snap.importMs),
      hash10kSingleThreadMs: round3(split.singleMs),
      hash10kTwoWorkersMs: round3(split.twoWorkersMs),
      snapshotStateKeys: snapshotRows,
      blocks: cairnBlocks,
      quick,
    },
    baseline: {
      mptTunedKeysPerSec: Math.round(mpt.keysPerSec),
      mptBlocks,
      cairnSameBlocksKeysPerSec: Math.round(cairnSame.keysPerSec),
    },
    ratios: {
      changedKeysVsMptTuned: round3(cairnSame.keysPerSec / mpt.keysPerSec),
    },
  };
  console.log(JSON.stringify(summary));
}
