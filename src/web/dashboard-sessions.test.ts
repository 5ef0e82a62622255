import { describe, expect, it } from 'vitest';
import { DashboardSessions, tokenDigest } from './dashboard-sessions.js';

describe('DashboardSessions', () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  it('opens a session with a random id of 32 bytes and finds it again by that id', () => {
    const sessions = new DashboardSessions();
    const a = sessions.open('alice', tokenDigest('t1'));
    const b = sessions.open('alice', tokenDigest('t1'));
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.id).not.toBe(b.id);
    expect(sessions.use(a.id)).toMatchObject({ admin: 'alice' });
    expect(sessions.use(a.id)!.tokenDigest.equals(tokenDigest('t1'))).toBe(true);
  });

  it('finds nothing for an unknown, malformed or missing id', () => {
    const sessions = new DashboardSessions();
    sessions.open('alice', tokenDigest('t1'));
    for (const id of [undefined, '', 'x', 'A'.repeat(43), '../../etc/passwd', 'A'.repeat(44)]) expect(sessions.use(id)).toBeNull();
  });

  it('ends a session on sign-out', () => {
    const sessions = new DashboardSessions();
    const s = sessions.open('alice', tokenDigest('t1'));
    expect(sessions.end(s.id)).toBe(true);
    expect(sessions.use(s.id)).toBeNull();
    expect(sessions.end(s.id)).toBe(false);
  });

  it('ends a session left idle, and any session past its lifetime however busy', () => {
    const c = clock();
    const sessions = new DashboardSessions({ idleMs: 1000, lifetimeMs: 5000, now: c.now });
    const idle = sessions.open('alice', tokenDigest('t1'));
    const busy = sessions.open('bob', tokenDigest('t2'));
    for (let i = 0; i < 4; i++) {
      c.advance(900);
      expect(sessions.use(busy.id)).not.toBeNull();
    }
    expect(sessions.use(idle.id)).toBeNull();
    c.advance(1400);
    expect(sessions.use(busy.id)).toBeNull();
  });

  it('keeps at most `max` sessions, ending the least recently used first', () => {
    const sessions = new DashboardSessions({ max: 2 });
    const a = sessions.open('a', tokenDigest('a'));
    const b = sessions.open('b', tokenDigest('b'));
    sessions.use(a.id);
    const c = sessions.open('c', tokenDigest('c'));
    expect(sessions.size).toBe(2);
    expect(sessions.use(b.id)).toBeNull();
    expect(sessions.use(a.id)).not.toBeNull();
    expect(sessions.use(c.id)).not.toBeNull();
  });
});
