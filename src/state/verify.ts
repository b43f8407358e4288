/**
 * Verification: recomputes every family's LtHash root and stats by a full engine scan (plus the
 * read-only overlay) and compares them with the committed ones, listing what is wrong per family.
 * The engine is derived data: a failed verify means rebuild it from a snapshot and the WAL.
 */
import { toHex } from '../lib/bytes.ts';
import { describe } from '../lib/errors.ts';
import { checkStoredValue, FAMILIES, FAMILY_INDEX, familyOfPhysicalKey } from './encoding.ts';
import { LtHash } from './ltHash.ts';
import { kvKey } from './records.ts';
import { scanFamily } from './stateView.ts';
import { caller, idOf, type StoreCore } from './storeCore.ts';
import type { VerifyFamilyReport, VerifyReport } from './storeTypes.ts';

/** Problems a verify report lists per family (the rest are counted). */
const VERIFY_PROBLEMS_KEPT = 20;

/** Recomputes every family root and its stats by a full scan and compares with the committed ones. */
export async function verifyState(core: StoreCore): Promise<VerifyReport> {
  return core.enqueue(async () => {
    core.latch.check();
    if (core.pending.size > 0) throw caller('verify needs a store without pending writes');
    const families: VerifyFamilyReport[] = [];
    for (const family of FAMILIES) {
      const f = FAMILY_INDEX[family];
      const acc = new LtHash();
      let rows = 0;
      let bytes = 0;
      // Bounded: a badly damaged engine must not grow the report with every bad row.
      const problems: string[] = [];
      let problemCount = 0;
      const problem = (text: string) => {
        if (++problemCount <= VERIFY_PROBLEMS_KEPT) problems.push(text);
      };
      const check = (key: Uint8Array, value: Uint8Array) => {
        if (familyOfPhysicalKey(key) !== family)
          problem(`row ${toHex(key.subarray(0, 40))} does not belong to ${family}`);
        try {
          const h = checkStoredValue(family, value);
          if (h > core.committed.height)
            problem(`row ${toHex(key.subarray(0, 40))} stamped at ${h} above the tip`);
        } catch (err) {
          problem(`row ${toHex(key.subarray(0, 40))}: ${describe(err)}`);
        }
        core.hasher.mixIn(acc, key, value);
        rows++;
        bytes += key.length + value.length;
      };
      for await (const { key, value } of scanFamily(core.kv!, family)) {
        if (core.overlay.size > 0 && core.overlay.has(idOf(kvKey(family, key)))) continue;
        check(key, value);
      }
      for (const row of core.overlay.values())
        if (row.family === family && row.value) check(row.key, row.value);
      const expected = core.committed.roots[f]!;
      const st = core.committed.stats[f]!;
      if (st.keys !== rows || st.bytes !== bytes)
        problem(`stats say ${st.keys} rows / ${st.bytes} bytes, scan found ${rows} / ${bytes}`);
      const ok = acc.equals(expected) && problemCount === 0;
      if (problemCount > problems.length)
        problems.push(`… and ${problemCount - problems.length} more problems`);
      if (!acc.equals(expected)) problems.unshift('root mismatch');
      families.push({
        family,
        rows,
        bytes,
        ok,
        expectedRoot: toHex(core.hasher.checksum(expected)),
        scannedRoot: toHex(core.hasher.checksum(acc)),
        problems,
      });
    }
    return {
      height: core.committed.height,
      ok: families.every((f) => f.ok),
      root: toHex(core.committedRoot()),
      families,
    };
  });
}
