import { describe, expect, it } from 'vitest';
import { ClientNamespace, ConnectionObjects, NameAllocator, isReservedName } from './statement-registry.js';
import type { Portal, Prepared } from './statement-registry.js';

function prepared(name: string, serverName: string): Prepared {
  return { name, text: 'SELECT 1', classification: { ok: true, statements: [], fingerprint: 'f' }, serverName, parse: Buffer.alloc(0), state: 'done' };
}

function portal(name: string, p: Prepared, conn: 'read' | 'write', cycle: number): Portal {
  return { name, prepared: p, params: [], serverName: name === '' ? '' : `srv_${name}`, conn, cycle, state: 'done' };
}

describe('NameAllocator', () => {
  it('hands out names in Airlock namespace, never twice, different per session', () => {
    const a = new NameAllocator();
    const b = new NameAllocator();
    const names = [a.statement(), a.portal(), a.statement(), b.statement()];
    expect(new Set(names).size).toBe(4);
    for (const n of names) expect(isReservedName(n)).toBe(true);
    expect(names[0]!.length).toBeLessThan(64); // NAMEDATALEN: never truncated by the server
  });

  it.each([
    ['_airlock_abc_s1', true],
    ['_AIRLOCK_x', true],
    ['airlock_x', false],
    ['s1', false],
  ])('says whether %s is reserved (%s)', (name, reserved) => {
    expect(isReservedName(name)).toBe(reserved);
  });
});

describe('ConnectionObjects', () => {
  it('holds a named statement by server name and the unnamed one by identity; a Query drops the unnamed one', () => {
    const here = new ConnectionObjects();
    const named = prepared('s1', '_airlock_x_s0');
    const unnamed = prepared('', '');
    here.named.add(named.serverName);
    here.unnamed = unnamed;
    expect(here.holds(named)).toBe(true);
    expect(here.holds(unnamed)).toBe(true);
    expect(here.holds(prepared('', ''))).toBe(false);
    here.querySent();
    expect(here.holds(unnamed)).toBe(false);
    expect(here.holds(named)).toBe(true);
  });
});

describe('ClientNamespace', () => {
  it('forgets the portals of a transaction that ended on its connection, up to that cycle, and marks them ended', () => {
    const ns = new ClientNamespace();
    const p = prepared('s', '_airlock_x_s0');
    const early = portal('a', p, 'read', 1);
    const later = portal('b', p, 'read', 5);
    const other = portal('c', p, 'write', 1);
    for (const x of [early, later, other]) {
      ns.portals.set(x.name, x);
      ns.bound.add(x);
    }
    ns.transactionEnded('read', 3);
    expect([...ns.portals.keys()]).toEqual(['b', 'c']);
    expect(early.ended).toBe(true);
    expect(later.ended).toBeUndefined();
  });

  it('counts names whose existence hangs on answers still to come, each settled once', () => {
    const ns = new ClientNamespace();
    const first = ns.pending('s1');
    const second = ns.pending('s1');
    expect(ns.isUncertain('s1')).toBe(true);
    first();
    first();
    expect(ns.isUncertain('s1')).toBe(true);
    second();
    expect(ns.isUncertain('s1')).toBe(false);
  });
});
