/**
 * Sums the self time of a V8 `.cpuprofile` by function and prints the top entries:
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/run.ts consensus --quick
 *   node --import tsx bench/support/cpuprofileTop.ts /tmp/prof/<file>.cpuprofile [top=30]
 * Self time is what a function spent in its own code (synchronous fs calls such as
 * `fdatasyncSync` count as the caller's native frame, so blocking I/O on the main thread shows up).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  children?: number[];
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg, callersOf] = process.argv.slice(2);
if (!file) {
  console.error('usage: cpuprofileTop.ts <file.cpuprofile> [top] [function name: show its call paths]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<string, number>();
let totalUs = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const node = byId.get(profile.samples[i]!)!;
  const dt = profile.timeDeltas[i] ?? 0;
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url ? `${url.replace(/^.*\/(src|bench|node_modules)\//, '$1/')}:${lineNumber + 1}` : '';
  const key = `${functionName || '(anonymous)'} ${where}`.trim();
  selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
  totalUs += dt;
}
const top = [...selfUs.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 30));
console.log(`total ${(totalUs / 1000).toFixed(0)} ms`);
for (const [key, us] of top) {
  console.log(
    `${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${key}`,
  );
}

if (callersOf) {
  // Self time of `callersOf`, attributed to its call paths (three frames up).
  const parent = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const byPath = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    let node = byId.get(profile.samples[i]!)!;
    if (node.callFrame.functionName !== callersOf) continue;
    const frames: string[] = [];
    for (let k = 0; k < 4 && node; k++) {
      frames.push(node.callFrame.functionName || '(anonymous)');
      node = parent.get(node.id)!;
    }
    const key = frames.join(' < ');
    byPath.set(key, (byPath.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  console.log(`\ncall paths of ${callersOf}:`);
  for (const [key, us] of [...byPath.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ms  ${key}`);
  }
}
