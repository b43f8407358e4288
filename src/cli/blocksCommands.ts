import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { BlockStore } from '../blocks/blockStore.ts';
import { openBlockStore, VALUE_LOG_DIR } from '../blocks/openBlockStore.ts';
import { reindexBlockStore } from '../blocks/reindex.ts';
import { globalRangeOf } from '../domain/committee.ts';
import { hashBlockHeader } from '../domain/crypto.ts';
import type { Block, FullCommitQC } from '../domain/types.ts';
import { fromHex, toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { BLOCKS_DIR } from '../node/node.ts';
import { describeError, report, withOpenStore } from './jsonReport.ts';

/**
 * `cairn blocks get <number|hash>`, `cairn blocks range`, `cairn blocks verify`, each with
 * `--data-dir <dir>` (the block store directory). Output is JSON; `verify` exits non-zero on any
 * problem, as does `get` when the block is absent or pruned. These never write: the store opens
 * read-only (no directory, file or preallocated segment is created, nothing is repaired; the index
 * is read from a scratch copy), and a missing store is NOT_FOUND with a non-zero exit.
 * `cairn blocks reindex` rebuilds the index from the value log (the operator's way out of a
 * damaged index).
 */
export function registerBlocksCommands(program: Command): void {
  const blocks = program
    .command('blocks')
    .description('inspect the block store (read-only), or rebuild its index');
  registerReindex(blocks);

  blocks
    .command('get <numberOrHash>')
    .description('print a block (by global number or 0x-hex header hash) and its covering QC as JSON')
    .requiredOption('--data-dir <dir>', 'node data directory, or the block store directory in it')
    .action(async (what: string, opts: { dataDir: string }) => {
      await withStore(opts.dataDir, (store) => {
        const isHash = /^(0x)?[0-9a-fA-F]{64}$/.test(what);
        let number: number;
        let block: Block;
        if (isHash) {
          const r = store.readBlockByHash(fromHex(what));
          if (r.status !== 'found') return report({ query: what, ...r }, 1);
          number = r.value.number;
          block = r.value.block;
        } else {
          number = Number(what);
          if (!Number.isSafeInteger(number) || number < 0) {
            throw new CairnError(
              'INVALID_ARGUMENT',
              `"${what}" is neither a block number nor a 32-byte hex hash`,
            );
          }
          const r = store.readBlock(number);
          if (r.status !== 'found') return report({ query: what, ...r }, 1);
          block = r.value;
        }
        const qc = store.readQCForBlock(number);
        return report({
          status: 'found',
          number,
          hash: toHex(hashBlockHeader(block.header)),
          header: headerJson(block),
          payloadBytes: block.payload.byteLength,
          qc: qc.status === 'found' ? qcJson(qc.value) : qc,
        });
      });
    });

  blocks
    .command('range')
    .description('print the stored ranges [first, next) of blocks and QCs and the prune floor')
    .requiredOption('--data-dir <dir>', 'node data directory, or the block store directory in it')
    .action(async (opts: { dataDir: string }) => {
      await withStore(opts.dataDir, (store) => report(store.ranges()));
    });

  blocks
    .command('verify')
    .description('check every record checksum, QC coverage and index consistency; non-zero exit on a problem')
    .requiredOption('--data-dir <dir>', 'node data directory, or the block store directory in it')
    .action(async (opts: { dataDir: string }) => {
      await withStore(opts.dataDir, async (store) => {
        const r = await store.verify();
        return report(
          { ok: r.problems.length === 0, ...store.ranges(), ...r },
          r.problems.length === 0 ? 0 : 1,
        );
      });
    });
}

/** Rebuild command: the one command here that writes (and only the index). */
function registerReindex(blocks: Command): void {
  blocks
    .command('reindex')
    .description(
      'rebuild the block index (LevelDB) from the value log; for an index reported CORRUPT. Stop the node first',
    )
    .requiredOption('--data-dir <dir>', 'node data directory, or the block store directory in it')
    .option('--keep-old', 'keep the replaced index as index.old')
    .action(async (opts: { dataDir: string; keepOld?: boolean }) => {
      try {
        const r = await reindexBlockStore({
          dir: resolveStoreDir(opts.dataDir),
          keepOld: opts.keepOld ?? false,
          onWarning: (message) => console.error(`warning: ${message}`),
        });
        report({ ok: true, ...r });
      } catch (err) {
        report({ ok: false, error: describeError(err) }, 1);
      }
    });
}

/** Accepts a node's data directory (which holds `blocks/`) or the block store directory itself. */
function resolveStoreDir(dir: string): string {
  const nested = path.join(dir, BLOCKS_DIR);
  return existsSync(path.join(nested, VALUE_LOG_DIR)) ? nested : dir;
}

function withStore(dir: string, fn: (store: BlockStore) => void | Promise<void>): Promise<void> {
  return withOpenStore(() => openBlockStore({ dir: resolveStoreDir(dir), readOnly: true }), fn);
}

function headerJson(b: Block): Record<string, unknown> {
  return {
    lane: b.header.lane,
    laneBlockNumber: b.header.blockNumber,
    parentHash: toHex(b.header.parentHash),
    payloadHash: toHex(b.header.payloadHash),
  };
}

function qcJson(q: FullCommitQC): Record<string, unknown> {
  return {
    roadIndex: q.qc.roadIndex,
    globalRange: globalRangeOf(q.qc),
    createdAtMs: q.qc.createdAtMs,
    signers: q.qc.signatures.length,
  };
}
