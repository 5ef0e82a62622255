/**
 * GET /v1/events: what happens, as it happens, for the dashboard
 * (server-sent events, https://html.spec.whatwg.org/multipage/server-sent-events.html).
 * Each record appended to the audit log arrives as an `audit` event: the
 * agents' statements and their decisions, requests for approval and their
 * decisions, freezes, trips, undos. The page refreshes its queue and its
 * freeze banner from them, so new requests appear without reloading.
 *
 * One follower of the log serves every open stream. A stream opened with a
 * session cookie ends when the session does (signed out, expired, token
 * revoked), checked at each heartbeat.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditRecord } from '../state/audit-log.js';
import type { AuditAccess } from './audit-routes.js';

export interface EventStreamOptions {
  audit: AuditAccess;
  /** False once the request's session has ended. */
  stillSignedIn: (request: FastifyRequest) => Promise<boolean>;
  log: (line: string) => void;
  /** Milliseconds between heartbeats (15 s by default). */
  heartbeatMs?: number;
}

/** Longest statement text sent in an event; the record keeps it whole. */
const MAX_TEXT = 4000;

/** Shares one follower of the audit log between every open stream. */
class AuditFanout {
  private readonly listeners = new Set<(record: AuditRecord) => void>();
  private stop: AbortController | null = null;

  constructor(
    private readonly audit: AuditAccess,
    private readonly log: (line: string) => void,
  ) {}

  subscribe(listener: (record: AuditRecord) => void): () => void {
    this.listeners.add(listener);
    if (this.stop === null) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        this.stop?.abort();
        this.stop = null;
      }
    };
  }

  private start(): void {
    const stop = new AbortController();
    this.stop = stop;
    this.audit
      .follow((record) => {
        for (const l of [...this.listeners]) l(record);
      }, stop.signal)
      .catch((err: Error) => {
        // The streams stay open but quiet; the page still polls the queue and the freeze state.
        this.log(`dashboard: stopped following the audit log for live events: ${err.message}`);
        if (this.stop === stop) this.stop = null;
      });
  }

  close(): void {
    this.listeners.clear();
    this.stop?.abort();
    this.stop = null;
  }
}

/** An audit record as the page needs it: long statement texts cut. */
function eventOf(record: AuditRecord): Record<string, unknown> {
  const { prev: _prev, hash: _hash, ...rest } = record;
  if (rest.text !== undefined && rest.text.length > MAX_TEXT) rest.text = `${rest.text.slice(0, MAX_TEXT)}…`;
  return rest;
}

export function registerEventStream(app: FastifyInstance, o: EventStreamOptions): void {
  const fanout = new AuditFanout(o.audit, o.log);
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...open]) end();
    fanout.close();
  });

  app.get('/v1/events', (request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    // The browser reconnects after 3 s if the stream breaks.
    raw.write('retry: 3000\n\n');
    let ended = false;
    const send = (record: AuditRecord) => {
      if (!ended) raw.write(`event: audit\nid: ${record.seq}\ndata: ${JSON.stringify(eventOf(record))}\n\n`);
    };
    const unsubscribe = fanout.subscribe(send);
    const heartbeat = setInterval(() => {
      o.stillSignedIn(request).then(
        (yes) => {
          if (!yes) {
            // The page reads this and shows the sign-in form.
            raw.write('event: signed-out\ndata: {}\n\n');
            end();
          } else if (!ended) raw.write(': heartbeat\n\n');
        },
        (err: Error) => {
          o.log(`dashboard: could not check an event stream's session: ${err.message}`);
          end();
        },
      );
    }, o.heartbeatMs ?? 15_000);
    const end = () => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(end);
      raw.end();
    };
    open.add(end);
    request.raw.on('close', end);
  });
}
