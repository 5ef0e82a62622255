/**
 * Airlock's MCP server over Streamable HTTP, at /mcp on a listener of its
 * own (`mcp.listen`; never the admin port, which carries no agent channel).
 *
 * Each request is authenticated as one agent with `Authorization: Bearer
 * <agent name>:<agent password>` — the agent's own Airlock credential, the
 * one in its connection URL — checked against the agent's SCRAM verifier
 * (the same secret the PostgreSQL listener checks), in constant time. The
 * request's SQL then goes to Airlock's own PostgreSQL listener over
 * loopback, logged in as that agent with that password: the same gate, the
 * same session limits, freeze and audit as the wire protocol, and no second
 * implementation of any of them.
 * @see https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#streamable-http
 */
import { pbkdf2, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createScramVerifier, deriveScramKeys } from '../protocol/auth/scram-verifier.js';
import type { ScramVerifier } from '../protocol/auth/scram-verifier.js';
import { ClassifierPool, heapLimitMbFor } from '../sql/classifier-pool.js';
import { GateClient, gateClassifier } from './gate-client.js';
import { createAirlockMcpServer } from './tools.js';
import type { ApprovalStore } from '../state/approval-store.js';

const pbkdf2Async = promisify(pbkdf2);

/** The path MCP clients post to. */
export const MCP_PATH = '/mcp';

/** Largest request body taken, beyond the statement's own limit (JSON escaping, parameters). */
const BODY_SLACK_BYTES = 8 * 1024 * 1024;

export interface McpHttpAgent {
  name: string;
  password: string;
  /** The database the agent connects to. */
  database: string;
}

export interface McpHttpOptions {
  host: string;
  port: number;
  agents: readonly McpHttpAgent[];
  /** Airlock's PostgreSQL listener, which every tool's SQL goes through. */
  gateway: { host: string; port: number };
  /** PEM certificate and key: when given, the listener speaks HTTPS. */
  tls?: { cert: string; key: string } | null;
  /** limits.max_statement_bytes: longer statements are refused unread, as the gate does. */
  maxStatementBytes: number;
  /** How long execute lets a statement wait for a human's approval before answering "held" (mcp.approval_wait_seconds). */
  approvalWaitMs?: number;
  /** The requests for approval, for approval_status (each agent sees its own only). */
  approvals?: ApprovalStore;
  /** Called for each request refused for its credential (for the audit log): the agent it named, if any, and the client's address. */
  onAuthFailed?: (refused: { agent: string | null; client: string }) => void;
  log?: (line: string) => void;
}

/**
 * Credential checks running at once (each a PBKDF2 of the agent's SCRAM
 * iteration count); past this a request is turned away with 503 rather than
 * queued, so that a flood of guesses cannot take every thread.
 */
const MAX_CHECKS_IN_FLIGHT = 16;

/**
 * Connections to the gate one agent's MCP requests share. Each is a session
 * of the agent's on Airlock's listener (counted against its max_sessions),
 * running one call at a time; requests beyond them wait for the least busy.
 */
const MAX_GATES_PER_AGENT = 4;

export interface McpHttp {
  address: { host: string; port: number };
  close(): Promise<void>;
}

interface KnownAgent {
  name: string;
  database: string;
  verifier: ScramVerifier;
}

/** Starts the listener; resolves once it listens. */
export async function startMcpHttp(options: McpHttpOptions): Promise<McpHttp> {
  const log = options.log ?? ((line: string) => console.error(line));
  // Only verifiers are kept, as for the wire: a password is checked, never stored here.
  const agents = new Map<string, KnownAgent>(
    options.agents.map((a) => [a.name, { name: a.name, database: a.database, verifier: createScramVerifier(a.password) }]),
  );
  // An unknown agent name costs the same PBKDF2 as a known one, so timing does not tell names apart.
  const decoy = createScramVerifier(`decoy-${Math.random()}`);
  const classifier = new ClassifierPool({ workers: 1, heapLimitMb: heapLimitMbFor(options.maxStatementBytes) });
  await classifier.ready();
  const gates = new Map<string, GateClient[]>();
  const gatewayHost = loopbackFor(options.gateway.host);

  /** An idle connection of the agent's, a new one while it has fewer than MAX_GATES_PER_AGENT, else the least busy. */
  const gateFor = (agent: KnownAgent, password: string): GateClient => {
    const own = gates.get(agent.name) ?? [];
    gates.set(agent.name, own);
    const idle = own.find((g) => g.load === 0);
    if (idle !== undefined) return idle;
    if (own.length < MAX_GATES_PER_AGENT) {
      const gate = new GateClient({
        connection: { host: gatewayHost, port: options.gateway.port, user: agent.name, password, database: agent.database, ssl: false },
        classify: gateClassifier(classifier, options.maxStatementBytes, `mcp:${agent.name}`),
        approvalWaitMs: options.approvalWaitMs,
      });
      own.push(gate);
      return gate;
    }
    return own.reduce((a, b) => (b.load < a.load ? b : a));
  };

  let checking = 0;
  /** The agent a request's bearer credential proves, or why not. Constant time in the password. */
  const authenticate = async (req: IncomingMessage): Promise<{ agent: KnownAgent; password: string } | { refused: string | null } | 'busy'> => {
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer ([^:\s]+):(\S.*)$/.exec(header);
    if (match === null) return { refused: null };
    const [, name, password] = match as unknown as [string, string, string];
    if (checking >= MAX_CHECKS_IN_FLIGHT) return 'busy';
    checking++;
    try {
      const agent = agents.get(name);
      const verifier = agent?.verifier ?? decoy;
      const salted = await pbkdf2Async(password, verifier.salt, verifier.iterations, 32, 'sha256');
      const ok = timingSafeEqual(deriveScramKeys(salted).storedKey, verifier.storedKey);
      return ok && agent !== undefined ? { agent, password } : { refused: name };
    } finally {
      checking--;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://airlock').pathname;
    if (path !== MCP_PATH) return reply(res, 404, { error: `Not found: MCP is served at ${MCP_PATH}.` });
    const who = await authenticate(req);
    if (who === 'busy') {
      res.setHeader('Retry-After', '1');
      return jsonRpcError(res, 503, 'Too many credential checks at once; try again in a moment.');
    }
    if ('refused' in who) {
      options.onAuthFailed?.({ agent: who.refused, client: `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}` });
      res.setHeader('WWW-Authenticate', 'Bearer realm="airlock"');
      return jsonRpcError(res, 401, 'Unauthorized: send Authorization: Bearer <agent name>:<agent password>, the agent\'s own Airlock credential.');
    }
    // Stateless: each POST is answered on its own, so there is no session to hold open or to lose.
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return jsonRpcError(res, 405, 'Method not allowed: this MCP server is stateless; send each request as a POST.');
    }
    const maxBody = 2 * options.maxStatementBytes + BODY_SLACK_BYTES;
    const body = await readJson(req, maxBody);
    if (body === TOO_LARGE) return jsonRpcError(res, 413, `The request is larger than ${maxBody} bytes.`);
    if (body === NOT_JSON) return jsonRpcError(res, 400, 'Parse error: the request body is not JSON.', -32700);
    const server = createAirlockMcpServer(gateFor(who.agent, who.password), (id) => {
      const r = options.approvals?.get(id);
      return r !== undefined && r.agent === who.agent.name ? r : null;
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      // The request's server and transport end with it; the agent's connection to the gate stays.
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      log(`mcp: a request failed: ${error instanceof Error ? error.message : String(error)}`);
      if (!res.headersSent) jsonRpcError(res, 500, 'Internal error.', -32603);
      else res.end();
    });
  };
  const server: Server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, listener) : createHttpServer(listener);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await classifier.close();
    throw error;
  }
  const address = server.address() as AddressInfo;
  return {
    address: { host: address.address, port: address.port },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const own of gates.values()) for (const gate of own) await gate.close();
      await classifier.close();
    },
  };
}

/** The address to reach a listener bound to `host` from this machine. */
function loopbackFor(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host;
}

const TOO_LARGE = Symbol('too large');
const NOT_JSON = Symbol('not JSON');

async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) return TOO_LARGE;
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return NOT_JSON; // answered as JSON-RPC's parse error
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A JSON-RPC error with no id, as the Streamable HTTP transport answers what it cannot take. */
function jsonRpcError(res: ServerResponse, status: number, message: string, code = -32000): void {
  reply(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}
