/**
 * Reading debug_print_parse's dump: every OID that names a function or an
 * operator, nothing a name or alias could smuggle in, and nothing but a
 * plain SELECT. The round trip itself is tested against real servers in
 * test/overload-resolution.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { callsInParseTree } from './overload-resolver.js';

const SELECT_HEAD = '{QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0';

describe('callsInParseTree', () => {
  it.each([
    ['a function call', `${SELECT_HEAD} :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 870 :funcresulttype 25}})}`, [870], []],
    ['an operator, with its function', `${SELECT_HEAD} {OPEXPR :opno 16395 :opfuncid 16394 :opresulttype 25}}`, [16394], [16395]],
    ['an operator whose function is not filled in yet', `${SELECT_HEAD} {OPEXPR :opno 654 :opfuncid 0}}`, [], [654]],
    ['a row comparison', `${SELECT_HEAD} {ROWCOMPAREEXPR :rctype 1 :opnos (o 97 97) :opfamilies (o 1976 1976)}}`, [], [97]],
    ['an ORDER BY, GROUP BY or DISTINCT', `${SELECT_HEAD} :sortClause ({SORTGROUPCLAUSE :tleSortGroupRef 1 :eqop 98 :sortop 664 :nulls_first false})}`, [], [98, 664]],
    ['an aggregate and a window function', `${SELECT_HEAD} {AGGREF :aggfnoid 16500 :aggtype 20} {WINDOWFUNC :winfnoid 3100 :wintype 20}}`, [16500, 3100], []],
    ['= ANY', `${SELECT_HEAD} {SCALARARRAYOPEXPR :opno 96 :opfuncid 65 :hashfuncid 0 :negfuncid 0 :useOr true}}`, [65], [96]],
    ['a window frame with an offset', `${SELECT_HEAD} :windowClause ({WINDOWCLAUSE :startInRangeFunc 4134 :endInRangeFunc 4134 :inRangeColl 0})}`, [4134], []],
    ['TABLESAMPLE', `${SELECT_HEAD} {TABLESAMPLECLAUSE :tsmhandler 3313 :args <>}}`, [3313], []],
    ['fields broken across lines', `${SELECT_HEAD}\n{FUNCEXPR :funcid\n16393 :funcresulttype 25}\n{OPEXPR\n:opno 16395}}`, [16393], [16395]],
    ['a subquery', `${SELECT_HEAD} :rtable ({RANGETBLENTRY :subquery {QUERY :commandType 1 :utilityStmt <> {FUNCEXPR :funcid 16393}}})}`, [16393], []],
  ])('reads %s', (_label, dump, functions, operators) => {
    const r = callsInParseTree(dump);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect([...r.functions].sort()).toEqual([...functions].sort());
    expect([...r.operators].sort()).toEqual([...operators].sort());
  });

  it('does not read a field out of an escaped name or alias', () => {
    const r = callsInParseTree(`${SELECT_HEAD} {TARGETENTRY :resname \\:funcid\\ 99999 :aliasname x\\:opno\\ 88888}}`);
    expect(r).toEqual({ ok: true, functions: [], operators: [] });
  });

  it.each([
    ['a utility statement', '{QUERY :commandType 6 :querySource 0 :canSetTag true :utilityStmt ? :resultRelation 0}'],
    ['a DELETE', '{QUERY :commandType 4 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 1}'],
    ['a SELECT that carries a utility statement', '{QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt {DECLARECURSORSTMT}}'],
    ['something else', 'parse tree: (not shown)'],
    ['an unreadable OID', `${SELECT_HEAD} {FUNCEXPR :funcid 99999999999999999999}}`],
  ])('refuses to read %s', (_label, dump) => {
    expect(callsInParseTree(dump).ok).toBe(false);
  });
});
