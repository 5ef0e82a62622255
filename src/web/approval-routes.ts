/**
 * The admin API's approval endpoints (docs/admin-api.md): list requests,
 * approve one (optionally with a row bound), deny one with a reason. Behind
 * the same admin-token check as every admin endpoint; a frozen agent's
 * request cannot be approved.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApprovalError } from '../state/approval-store.js';
import { secondFactorProblem } from './second-factor.js';
import type { SecondFactor } from './second-factor.js';
import type { ApprovalRequest, ApprovalStore } from '../state/approval-store.js';

export interface ApprovalRoutesOptions {
  store: ApprovalStore;
  /** The admin making the request (from the token). */
  by: (request: FastifyRequest) => string;
  /** Why the agent is frozen now, in words, or null. */
  frozen: (agent: string) => string | null;
  /** Puts the decision on the record. */
  record: (kind: 'approve' | 'deny', by: string, request: ApprovalRequest) => void;
  /** With admin.totp_secret: approving also needs a current TOTP code. */
  secondFactor?: SecondFactor;
}

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } },
} as const;

const approveBody = {
  type: 'object',
  additionalProperties: false,
  properties: { max_rows: { type: 'integer', minimum: 0, maximum: 1_000_000_000 } },
} as const;

const denyBody = {
  type: 'object',
  additionalProperties: false,
  required: ['reason'],
  properties: { reason: { type: 'string', minLength: 1, maxLength: 1000 } },
} as const;

export function registerApprovalRoutes(app: FastifyInstance, o: ApprovalRoutesOptions): void {
  app.get<{ Querystring: { all?: string } }>('/v1/approvals', async (request) => ({ requests: o.store.list(request.query.all === 'true') }));

  app.get<{ Params: { id: string } }>('/v1/approvals/:id', { schema: { params: idParams } }, async (request, reply) => {
    const found = o.store.get(Number(request.params.id));
    if (found === undefined) return reply.code(404).send({ error: `There is no approval request #${request.params.id}.` });
    return { request: found };
  });

  app.post<{ Params: { id: string }; Body: { max_rows?: number } }>(
    '/v1/approvals/:id/approve',
    { schema: { params: idParams, body: approveBody } },
    async (request, reply) => {
      const id = Number(request.params.id);
      const pending = o.store.get(id);
      if (pending === undefined) return reply.code(404).send({ error: `There is no approval request #${id}.` });
      // A freeze trumps everything: nothing is approved for a frozen agent.
      const frozen = o.frozen(pending.agent);
      if (frozen !== null) return reply.code(409).send({ error: `Agent "${pending.agent}" is frozen (${frozen}), so request #${id} cannot be approved.` });
      const name = o.by(request);
      const missing = secondFactorProblem(o.secondFactor, request);
      if (missing !== null) return reply.code(401).send({ error: missing });
      const approved = await decide(reply, () => o.store.approve(id, name, request.body?.max_rows ?? null));
      if (approved === null) return reply;
      o.record('approve', name, approved);
      const bound = approved.maxRows === undefined ? 'within its dry run\'s impact' : `up to ${approved.maxRows} rows`;
      return { request: approved, message: `Request #${id} is approved, once, ${bound}, until ${approved.expires}.` };
    },
  );

  app.post<{ Params: { id: string }; Body: { reason: string } }>(
    '/v1/approvals/:id/deny',
    { schema: { params: idParams, body: denyBody } },
    async (request, reply) => {
      const id = Number(request.params.id);
      const name = o.by(request);
      const denied = await decide(reply, () => o.store.deny(id, name, request.body.reason));
      if (denied === null) return reply;
      o.record('deny', name, denied);
      return { request: denied, message: `Request #${id} is denied.` };
    },
  );
}

/** Runs a decision; a request that is missing or no longer pending is answered 404 or 409 with the store's words. */
async function decide(reply: { code: (n: number) => { send: (body: unknown) => unknown } }, fn: () => Promise<ApprovalRequest>): Promise<ApprovalRequest | null> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof ApprovalError)) throw err;
    reply.code(err.status).send({ error: err.message });
    return null;
  }
}
