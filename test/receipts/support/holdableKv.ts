import type { MemoryKv } from '../../../src/testing/memoryKv.ts';
import { ObservedKv } from '../../support/observedKv.ts';

/**
 * A MemoryKv whose batch writes a test double can hold: it overrides `writeBatch` and parks a
 * write with `whileHeld()` until `release()` (call it only while `hold` is set, so that a write not
 * held takes no extra turn).
 */
export class HoldableKv extends ObservedKv<MemoryKv> {
  private held: (() => void)[] = [];
  hold = false;

  get heldCount(): number {
    return this.held.length;
  }

  release(): void {
    this.hold = false;
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }

  protected whileHeld(): Promise<void> {
    return new Promise<void>((go) => this.held.push(go));
  }
}
