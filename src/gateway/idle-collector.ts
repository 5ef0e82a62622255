/**
 * Gives memory back once a burst of work is over. V8 collects garbage when
 * JavaScript allocates; a gateway that falls quiet after a flood (hostile
 * or honest) allocates nothing, so the garbage of the flood, and the heap
 * pages under it, stay resident for as long as it stays quiet. Every few
 * seconds this looks at the main thread: if the event loop was nearly idle
 * over the last interval and the heap holds well more than it did after
 * the last full collection, it runs one. A busy gateway is left to V8.
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';

export interface IdleCollectorOptions {
  /** How often to look, in milliseconds (default 5000). */
  everyMs?: number;
  /** Event-loop utilisation over an interval under which the process counts as quiet (default 0.05). */
  quietUtilisation?: number;
  /** Heap growth since the last full collection that is worth one (default 16 MiB). */
  growthBytes?: number;
}

export class IdleCollector {
  private readonly timer: NodeJS.Timeout;
  private lastUtilisation = performance.eventLoopUtilization();
  /** Heap in use after the last full collection (none yet: the first quiet look collects). */
  private baseline = 0;
  /** Full collections run, for tests and logs. */
  collections = 0;

  constructor(
    private readonly collect: () => void = exposedGc(),
    options: IdleCollectorOptions = {},
  ) {
    const quiet = options.quietUtilisation ?? 0.05;
    const growth = options.growthBytes ?? 16 * 1024 * 1024;
    this.timer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      const busy = performance.eventLoopUtilization(now, this.lastUtilisation).utilization;
      this.lastUtilisation = now;
      if (busy > quiet || process.memoryUsage().heapUsed - this.baseline < growth) return;
      this.collect();
      this.collections++;
      this.baseline = process.memoryUsage().heapUsed;
    }, options.everyMs ?? 5000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * V8's full collection, which Node exposes only behind --expose-gc: the
 * flag set now makes `gc` a global of contexts created after it, such as
 * the one made here. Nothing else of the process changes.
 */
function exposedGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}
