/**
 * The entry point of a classifier worker thread (see classifier-pool.ts): it
 * loads the parser once, then classifies one text per message and answers
 * with the facts and the memory it now holds (the parser's WebAssembly memory
 * only ever grows, so the pool retires a worker that grew too large).
 */
import { parentPort } from 'node:worker_threads';
import { classify, loadParser } from './classify.js';
import type { WorkerReply, WorkerRequest } from './classifier-protocol.js';

const port = parentPort;
if (port === null) throw new Error('classifier-worker.ts runs as a worker thread, started by ClassifierPool.');

const loaded = loadParser();
port.on('message', (request: WorkerRequest) => {
  // Jobs come only after 'ready', so the parser is loaded; awaiting costs nothing then.
  void loaded.then(() => {
    const result = classify(request.text);
    // external counts this isolate's ArrayBuffers and the WebAssembly memory backing the parser.
    const reply: WorkerReply = { type: 'done', id: request.id, result, memoryBytes: process.memoryUsage().external };
    port.postMessage(reply);
  });
});
loaded.then(
  () => port.postMessage({ type: 'ready' } satisfies WorkerReply),
  (error: unknown) => {
    // Without a parser this worker is useless: let it die, and the pool see why.
    throw error instanceof Error ? error : new Error(String(error));
  },
);
