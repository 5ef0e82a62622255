/**
 * What the policy says about a statement: plain data, turned into an
 * ErrorResponse only at the edge.
 */

export type Decision =
  | { kind: 'allow-read'; rule: string }
  /** A write or DDL the agent's policy allows: the gateway runs it on its write path ('write' for DML, 'ddl'). */
  | { kind: 'allow-write'; rule: string }
  | {
      kind: 'deny';
      /** The rule that refused, a stable name for the audit log and the docs. */
      rule: string;
      /** A full sentence naming the agent, the statement and the rule. */
      message: string;
      /** What a human can do about it. */
      hint: string;
      /** The SQLSTATE the agent receives. */
      sqlstate: string;
      /** Trips the tripwire at once (a canary table was touched). */
      trips?: boolean;
    };

export type Denial = Extract<Decision, { kind: 'deny' }>;
