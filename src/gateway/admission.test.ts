import { describe, expect, it } from 'vitest';
import { Admission } from './admission.js';

describe('Admission', () => {
  it('counts waiting connections apart, letting the longest waiting go when full', () => {
    const admission = new Admission({ maxClients: 10, maxPendingLogins: 2 });
    const evicted: number[] = [];
    const tickets = [0, 1, 2].map((i) => admission.arrive(() => evicted.push(i)));
    expect(evicted).toEqual([0]);
    expect(admission.pending).toBe(2);
    expect(tickets[0]!.login('a', 5)?.code).toBe('08006');
    expect(tickets[1]!.login('a', 5)).toBeNull();
    expect([admission.pending, admission.active]).toEqual([1, 1]);
    tickets[1]!.release();
    tickets[1]!.release();
    tickets[2]!.release();
    expect([admission.pending, admission.active, admission.sessionsOf('a')]).toEqual([0, 0, 0]);
  });

  it("refuses an agent's session beyond its limit, and any beyond max_clients, with 53300", () => {
    const admission = new Admission({ maxClients: 3, maxPendingLogins: 10 });
    const ticket = () => admission.arrive(() => undefined);
    const held = [ticket(), ticket()];
    for (const t of held) expect(t.login('a', 2)).toBeNull();
    const refused = ticket().login('a', 2);
    expect(refused).toMatchObject({ code: '53300', message: expect.stringMatching(/agent "a" already holds 2 sessions.*max_sessions is 2/) });
    expect(ticket().login('b', 2)).toBeNull();
    expect(ticket().login('c', 2)).toMatchObject({ code: '53300', message: expect.stringMatching(/max_clients is 3/) });
    held[0]!.release();
    expect(ticket().login('a', 2)).toBeNull();
  });
});
