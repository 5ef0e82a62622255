/**
 * `airlock mcp` on stdio: an MCP server that an agent's MCP client launches
 * as a command. A thin client of the running Airlock: it holds only the
 * agent's own connection URL and reaches the database through Airlock's
 * PostgreSQL listener; it reads no config file, no state directory and no
 * upstream password (DESIGN.md, trust boundaries).
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { ClassifierPool } from '../sql/classifier-pool.js';
import { DEFAULT_MAX_STATEMENT_BYTES } from '../sql/statement-size.js';
import { GateClient, gateClassifier } from './gate-client.js';
import { createAirlockMcpServer } from './tools.js';

export interface StdioMcp {
  /** Resolves when the client closes stdin (or `close` is called). */
  closed: Promise<void>;
  close(): Promise<void>;
}

/** Serves MCP on this process's stdin and stdout until the client goes away. */
export async function serveMcpOnStdio(url: string, options: { approvalWaitMs?: number } = {}): Promise<StdioMcp> {
  // The gate's own classifier, off the event loop, for the query tool's "reads only".
  const classifier = new ClassifierPool({ workers: 1 });
  await classifier.ready();
  // The server's limits.max_statement_bytes is not known here: the default bounds what is parsed
  // locally (a longer read is refused here; execute sends it, for the gate to judge by its own limit).
  const gate = new GateClient({ connection: url, classify: gateClassifier(classifier, DEFAULT_MAX_STATEMENT_BYTES), approvalWaitMs: options.approvalWaitMs });
  const server = createAirlockMcpServer(gate);
  const transport = new StdioServerTransport();
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    // Deferred a tick: server.close() closes the transport, whose onclose calls this again.
    closing ??= Promise.resolve().then(async () => {
      await server.close();
      await gate.close();
      await classifier.close();
      resolveClosed();
    });
    return closing;
  };
  transport.onclose = () => void close();
  // The SDK's stdio transport does not notice a closed stdin by itself.
  process.stdin.once('end', () => void close());
  await server.connect(transport);
  return { closed, close };
}
