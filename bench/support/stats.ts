/**
 * Small helpers shared by the benchmarks: order statistics, interleaved rounds and a plain table.
 */

export const nowMs = (): number => performance.now();

export function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}

/** Nearest-rank percentile (p in 0..1) of the samples. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/**
 * Runs every contender once per round, rotating who goes first, so slow drift of a noisy machine
 * (other processes, page-cache writeback) lands on every side alike. Returns each side's samples.
 */
export async function interleaved<K extends string>(
  rounds: number,
  contenders: Record<K, () => Promise<number> | number>,
): Promise<Record<K, number[]>> {
  const names = Object.keys(contenders) as K[];
  const out = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(r + i) % names.length]!;
      out[name].push(await contenders[name]());
    }
  }
  return out;
}

/** Left-aligned first column, right-aligned others. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

/** "value (bar >= x: ok|MISS)" for the ratio lines. */
export function verdict(value: number, bar: number, direction: '>=' | '<='): string {
  const ok = direction === '>=' ? value >= bar : value <= bar;
  return `${round3(value)} (bar ${direction} ${bar}: ${ok ? 'ok' : 'MISS'})`;
}
