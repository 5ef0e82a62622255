/**
 * What the gateway holds for each agent: the verifier its password is checked
 * against (never the password itself), and the upstream read role it runs as.
 */
import type { ScramVerifier } from '../protocol/auth/scram-verifier.js';

export interface AgentCredentials {
  name: string;
  profile: string;
  /** The database name the agent must ask for. */
  database: string;
  verifier: ScramVerifier;
  /** The upstream role this agent's reads run as: no superuser, no write grants, read-only by default. */
  readRole: string;
  /** The read role's password, derived from a secret only Airlock holds (read-role-password.ts). */
  readRolePassword: string;
  /** Most sessions the agent may hold at once. */
  maxSessions: number;
}
