"""Nested groups (idp_bridge/groups.py): the bounded breadth-first walk as transcripts (a fake
directory answers the filters the walk asks for), and the in-chain query's result."""

from __future__ import annotations

import pytest

from idp_bridge.groups import (
    Group,
    GroupWalk,
    in_chain_filter,
    in_chain_resolution,
)
from idp_bridge.ldap_syntax import parse_filter, unescape_filter_value

BASE = "ou=groups,dc=x"
USER = "uid=alice,ou=people,dc=x"
GROUP_FILTER = "(objectClass=groupOfNames)"


def g(name: str) -> str:
    return f"cn={name},{BASE}"


def run(members: dict[str, list[str]], *, max_depth: int = 16, max_groups: int = 1000,
        user: str = USER, batch: int = 50) -> tuple[GroupWalk, list[int]]:
    """Walk a directory given as {group name: member DNs}, answering each filter the walk asks
    for by evaluating it (parsed back, not trusted) against that table. Returns the walk and
    the number of filters per round."""
    walk = GroupWalk(user, max_depth=max_depth, max_groups=max_groups)
    rounds = []
    while not walk.done:
        queries = walk.filters(GROUP_FILTER, "member", batch=batch)
        rounds.append(len(queries))
        found = []
        for query in queries:
            tree = parse_filter(query)
            wanted = {unescape_filter_value(item.value).lower()
                      for item in tree.children[1].children}  # type: ignore[union-attr]
            found += [Group(g(name), name) for name, dns in members.items()
                      if wanted & {d.lower() for d in dns}]
        walk.feed(found)
    return walk, rounds


NESTED = {"tax-clerks": [USER], "tax-dept": [g("tax-clerks"), "uid=bob,ou=people,dc=x"],
          "all-staff": [g("tax-dept")], "unrelated": ["uid=carol,ou=people,dc=x"]}


def test_nested_groups_one_round_per_level() -> None:
    walk, rounds = run(NESTED)
    result = walk.result()
    assert result.names == ("all-staff", "tax-clerks", "tax-dept")
    assert result.complete and result.method == "walk"
    assert result.depth == 3 and rounds == [1, 1, 1, 1]


def test_no_groups() -> None:
    walk, rounds = run({"other": ["uid=bob,dc=x"]})
    assert walk.result().names == () and walk.result().complete and rounds == [1]


def test_a_cycle_ends_the_walk() -> None:
    walk, _ = run({"loop-a": [USER, g("loop-b")], "loop-b": [g("loop-a")]})
    result = walk.result()
    assert result.names == ("loop-a", "loop-b") and result.complete
    assert result.revisits == 1


def test_a_group_reached_twice_is_listed_once() -> None:
    walk, _ = run({"left": [USER], "right": [USER], "top": [g("left"), g("right")]})
    assert walk.result().names == ("left", "right", "top")


def test_dn_case_does_not_defeat_cycle_detection() -> None:
    walk, _ = run({"loop-a": [USER, g("LOOP-B").upper()], "loop-b": [g("loop-a").upper()]})
    assert walk.result().names == ("loop-a", "loop-b")


def chain(length: int) -> dict[str, list[str]]:
    return {f"level-{i}": [USER if i == 1 else g(f"level-{i - 1}")] for i in range(1, length + 1)}


def test_depth_bound_exactly_reached_is_complete() -> None:
    walk, _ = run(chain(4), max_depth=4)
    assert walk.result().complete and walk.result().depth == 4


def test_nesting_deeper_than_the_bound_is_incomplete() -> None:
    walk, rounds = run(chain(6), max_depth=4)
    result = walk.result()
    assert not result.complete and "max_group_depth=4" in result.detail
    assert len(result.groups) == 4 and len(rounds) == 5


def test_more_groups_than_the_bound_is_incomplete() -> None:
    walk, _ = run({f"g{i}": [USER] for i in range(12)}, max_groups=10)
    result = walk.result()
    assert not result.complete and "max_groups=10" in result.detail
    assert len(result.groups) == 10


def test_exactly_max_groups_is_complete() -> None:
    walk, _ = run({f"g{i}": [USER] for i in range(10)}, max_groups=10)
    assert walk.result().complete and len(walk.result().groups) == 10


def test_a_wide_level_is_split_into_batches() -> None:
    members = {f"g{i}": [USER] for i in range(7)}
    members["top"] = [g(f"g{i}") for i in range(7)]
    walk, rounds = run(members, batch=3)
    assert rounds == [1, 3, 1] and "top" in walk.result().names


def test_user_dn_is_escaped_in_the_filter() -> None:
    user = "uid=a*)(uid=*,ou=people,dc=x"
    walk = GroupWalk(user, max_depth=3, max_groups=10)
    (query,) = walk.filters(GROUP_FILTER, "member")
    assert query == "(&(objectClass=groupOfNames)(|(member=uid=a\\2a\\29\\28uid=\\2a,ou=people,dc=x)))"


def test_feeding_a_finished_walk_is_a_bug() -> None:
    walk, _ = run({})
    with pytest.raises(ValueError):
        walk.feed([])
    with pytest.raises(ValueError):
        GroupWalk(USER, max_depth=3, max_groups=3).result()


def test_in_chain_filter() -> None:
    assert in_chain_filter("(objectClass=group)", "member", "CN=Tanaka\\, Taro (tax),DC=x") == (
        "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Tanaka\\5c, Taro \\28tax\\29,DC=x))")
    parse_filter(in_chain_filter("(objectClass=group)", "member", "cn=*,dc=x"))


def test_in_chain_resolution() -> None:
    found = [Group(g("b"), "b"), Group(g("a"), "a"), Group(g("A").upper(), "a")]
    result = in_chain_resolution(found, max_groups=5)
    assert result.names == ("a", "b") and result.complete and result.method == "in-chain"
    assert not in_chain_resolution(found, max_groups=1).complete
    truncated = in_chain_resolution(found, max_groups=5, truncated=True)
    assert not truncated.complete and "max_groups=5" in truncated.detail
