import type { Command } from 'commander';
import { fromHex, toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { ReceiptStore } from '../receipts/receiptStore.ts';
import type { Log, Receipt } from '../receipts/types.ts';
import { report, withOpenStore } from './jsonReport.ts';

/**
 * `cairn receipts get <txhash>`, `cairn receipts logs --from --to --address --topic`,
 * `cairn receipts verify`, each with `--data-dir <dir>` (the receipt store directory). Output is
 * JSON; `get` exits 1 when the receipt is absent, `verify` when it finds any problem. The
 * directory is opened read-only: recovery (WAL replay into the hot tier) runs on a scratch copy of
 * the hot tier and in memory, so inspecting a missing or crashed directory changes nothing in it.
 */
export function registerReceiptsCommands(program: Command): void {
  const receipts = program.command('receipts').description('inspect the receipt store');

  receipts
    .command('get <txhash>')
    .description('print the receipt of a transaction (0x-hex hash) as JSON')
    .requiredOption('--data-dir <dir>', 'receipt store directory')
    .action(async (hash: string, opts: { dataDir: string }) => {
      await withStore(opts.dataDir, async (store) => {
        const r = await store.getReceipt(parseHex(hash, 32, 'transaction hash'));
        if (!r) return report({ status: 'not-found', txHash: hash }, 1);
        return report({ status: 'found', receipt: receiptJson(r) });
      });
    });

  receipts
    .command('logs')
    .description('eth_getLogs over a block range: --address and --topic may repeat (OR)')
    .requiredOption('--data-dir <dir>', 'receipt store directory')
    .option('--from <block>', 'first block (default: latest)')
    .option('--to <block>', 'last block (default: latest)')
    .option('--address <hex>', 'contract address (repeatable)', collect, [])
    .option(
      '--topic <pos=hex>',
      'topic filter, position 0-3 and value, e.g. 0=0xddf2... (repeatable; same position = OR)',
      collect,
      [],
    )
    .action(
      async (opts: { dataDir: string; from?: string; to?: string; address: string[]; topic: string[] }) => {
        await withStore(opts.dataDir, async (store) => {
          const topics: (Uint8Array[] | null)[] = [null, null, null, null];
          for (const t of opts.topic) {
            const m = /^([0-3])=(.+)$/.exec(t);
            if (!m)
              throw new CairnError('INVALID_ARGUMENT', `--topic "${t}" must be <position 0-3>=<32-byte hex>`);
            const pos = Number(m[1]);
            const values = topics[pos] ?? [];
            values.push(parseHex(m[2]!, 32, 'topic'));
            topics[pos] = values;
          }
          const logs = await store.getLogs({
            fromBlock: opts.from === undefined ? undefined : parseBlock(opts.from),
            toBlock: opts.to === undefined ? undefined : parseBlock(opts.to),
            addresses: opts.address.map((a) => parseHex(a, 20, 'address')),
            topics,
          });
          return report({ count: logs.length, logs: logs.map(logJson) });
        });
      },
    );

  receipts
    .command('verify')
    .description(
      'check the manifest, every archive file checksum and row count, and WAL ↔ hot tier ↔ archive',
    )
    .requiredOption('--data-dir <dir>', 'receipt store directory')
    .action(async (opts: { dataDir: string }) => {
      await withStore(opts.dataDir, async (store) => {
        const v = await store.verify();
        report({ ok: v.problems.length === 0, ...v }, v.problems.length === 0 ? 0 : 1);
      });
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseHex(text: string, bytes: number, what: string): Uint8Array {
  if (!new RegExp(`^(0x)?[0-9a-fA-F]{${bytes * 2}}$`).test(text)) {
    throw new CairnError('INVALID_ARGUMENT', `${what} "${text}" must be ${bytes} bytes of hex`);
  }
  return fromHex(text);
}

function parseBlock(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new CairnError('INVALID_ARGUMENT', `"${text}" is not a block number`);
  return n;
}

const hex = (b: Uint8Array): string => `0x${toHex(b)}`;

function logJson(l: Log): Record<string, unknown> {
  return {
    blockNumber: l.blockNumber,
    blockHash: hex(l.blockHash),
    txHash: hex(l.txHash),
    txIndex: l.txIndex,
    logIndex: l.logIndex,
    address: hex(l.address),
    topics: l.topics.map(hex),
    data: hex(l.data),
  };
}

function receiptJson(r: Receipt): Record<string, unknown> {
  return {
    txHash: hex(r.txHash),
    txIndex: r.txIndex,
    blockNumber: r.blockNumber,
    blockHash: hex(r.blockHash),
    type: r.type,
    status: r.status,
    from: hex(r.from),
    to: r.to ? hex(r.to) : null,
    contractAddress: r.contractAddress ? hex(r.contractAddress) : null,
    gasUsed: r.gasUsed,
    cumulativeGasUsed: r.cumulativeGasUsed,
    effectiveGasPrice: r.effectiveGasPrice.toString(),
    logsBloom: hex(r.logsBloom),
    logs: r.logs.map(logJson),
  };
}

function withStore(dir: string, fn: (store: ReceiptStore) => Promise<void>): Promise<void> {
  return withOpenStore(() => ReceiptStore.open({ dir, rotateAtOpen: false, readOnly: true }), fn);
}
