/**
 * LatencyHistogram resolution: a quantile is reported at most 0.55 % above the true sample (128
 * buckets per doubling), never below it, and clamped to the largest sample.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LatencyHistogram } from '../../src/consensus/metrics.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';

test('quantiles are within 0.55 % above the exact nearest-rank value', () => {
  const seed = seedFromEnv();
  console.log(`seed ${seed}`);
  const rng = new Rng(seed);
  const h = new LatencyHistogram();
  const samples: number[] = [];
  for (let i = 0; i < 5000; i++) {
    // 0.05 ms .. ~50 ms, log-uniform: the range the consensus bench sees.
    const ms = 0.05 * 2 ** (rng.next() * 10);
    samples.push(ms);
    h.record(ms);
  }
  samples.sort((a, b) => a - b);
  for (const q of [0.01, 0.1, 0.5, 0.9, 0.99, 1]) {
    const exact = samples[Math.max(0, Math.ceil(q * samples.length) - 1)]!;
    const got = h.quantileMs(q);
    assert.ok(got >= exact, `q=${q}: ${got} below the exact ${exact}`);
    assert.ok(got <= exact * 1.0055, `q=${q}: ${got} more than 0.55 % above the exact ${exact}`);
  }
  assert.equal(h.quantileMs(1), samples.at(-1));
  assert.equal(h.count, 5000);
});

test('two p50s 4 % apart are told apart (8 buckets per doubling could not)', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 0; i < 100; i++) {
    a.record(0.6);
    b.record(0.624);
  }
  // A slower tail on both, so the median is read from its bucket (not clamped to the maximum).
  for (let i = 0; i < 50; i++) {
    a.record(10);
    b.record(10);
  }
  const ratio = b.quantileMs(0.5) / a.quantileMs(0.5);
  assert.ok(Math.abs(ratio - 1.04) < 0.011, `ratio ${ratio}`);
});
