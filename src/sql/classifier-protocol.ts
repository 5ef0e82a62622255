/** Messages between ClassifierPool and its workers (structured-cloned plain data). */
import type { Classification } from './facts.js';

export interface WorkerRequest {
  id: number;
  text: string;
}

export type WorkerReply =
  /** The parser is loaded; jobs may come. */
  | { type: 'ready' }
  /** One job's facts, and the worker's memory outside the JS heap afterwards, in bytes. */
  | { type: 'done'; id: number; result: Classification; memoryBytes: number };
