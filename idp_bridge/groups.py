"""Nested group resolution, pure: the breadth-first walk up `member` links (for directories
without AD's LDAP_MATCHING_RULE_IN_CHAIN) and the result both strategies return.

Owns: depth and count bounds, cycle (and diamond) handling, and the filters each step needs. It
must not search: the shell runs the filters `GroupWalk.filters()` asks for and feeds back what it
found (sans-IO, like h11's connection object).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from idp_bridge.ldap_syntax import LdapSyntaxError, escape_filter_value, normalize_dn

IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN (AD, Samba)
WALK_BATCH = 50  # member DNs per OR-filter: keeps each filter well under AD's size limits


@dataclass(frozen=True, slots=True)
class Group:
    dn: str
    name: str


@dataclass(frozen=True, slots=True)
class GroupResolution:
    """All groups a user is in, directly or through other groups.

    `complete` is False when a bound stopped the resolution (the login is then refused, since a
    missing group could be one a deny rule names); `detail` says which bound. `depth` is the
    deepest nesting level seen (1 = direct membership; 0 for the in-chain query, which does not
    report levels). `revisits` counts memberships that led to a group already found: cycles and
    diamonds, both ended there.
    """

    groups: tuple[Group, ...]
    method: str  # "in-chain" or "walk"
    complete: bool = True
    depth: int = 0
    revisits: int = 0
    detail: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)


def _key(dn: str) -> object:
    try:
        return normalize_dn(dn)
    except LdapSyntaxError:
        return dn.casefold()


def _sorted(groups: Iterable[Group]) -> tuple[Group, ...]:
    return tuple(sorted(groups, key=lambda g: (g.name.casefold(), g.dn.casefold())))


def in_chain_filter(group_filter: str, member_attribute: str, user_dn: str) -> str:
    """AD's one-query transitive membership: every group with the user somewhere below it."""
    return (f"(&{group_filter}({member_attribute}:{IN_CHAIN_RULE}:="
            f"{escape_filter_value(user_dn)}))")


def in_chain_resolution(found: Iterable[Group], *, max_groups: int,
                        truncated: bool = False) -> GroupResolution:
    """The result of the in-chain query; `truncated` when the server or the shell stopped it."""
    unique: dict[object, Group] = {}
    for group in found:
        unique.setdefault(_key(group.dn), group)
    if truncated or len(unique) > max_groups:
        return GroupResolution(_sorted(list(unique.values())[:max_groups]), "in-chain",
                               complete=False,
                               detail=f"more than max_groups={max_groups} groups")
    return GroupResolution(_sorted(unique.values()), "in-chain")


class GroupWalk:
    """Breadth-first walk from a user up through the groups that list it as a member.

    Loop: while `frontier` is not empty, run every filter of `filters()` and pass all the groups
    found, together, to `feed()`. Each level is one round of queries, so a user three levels
    deep costs three rounds however many groups there are.
    """

    def __init__(self, user_dn: str, *, max_depth: int, max_groups: int) -> None:
        if max_depth < 1 or max_groups < 1:
            raise ValueError("max_depth and max_groups must be at least 1")
        self._max_depth = max_depth
        self._max_groups = max_groups
        self._seen: set[object] = {_key(user_dn)}
        self._found: list[Group] = []
        self._frontier: tuple[str, ...] = (user_dn,)
        self._level = 0  # levels fed so far
        self._revisits = 0
        self._stopped = ""

    @property
    def frontier(self) -> tuple[str, ...]:
        """DNs whose parent groups are wanted next; empty when the walk is over."""
        return () if self._stopped else self._frontier

    def filters(self, group_filter: str, member_attribute: str,
                batch: int = WALK_BATCH) -> tuple[str, ...]:
        """The searches for the current frontier: groups with any frontier DN as a member."""
        out = []
        frontier = self.frontier
        for start in range(0, len(frontier), batch):
            terms = "".join(f"({member_attribute}={escape_filter_value(dn)})"
                            for dn in frontier[start:start + batch])
            out.append(f"(&{group_filter}(|{terms}))")
        return tuple(out)

    def feed(self, found: Iterable[Group]) -> None:
        """Every group the current frontier's filters returned."""
        if not self.frontier:
            raise ValueError("the walk is over; nothing was asked")
        self._level += 1
        new: list[Group] = []
        for group in found:
            key = _key(group.dn)
            if key in self._seen:
                self._revisits += 1
                continue
            self._seen.add(key)
            new.append(group)
        if new and self._level > self._max_depth:
            self._stopped = f"groups nested deeper than max_group_depth={self._max_depth}"
            return
        room = self._max_groups - len(self._found)
        self._found.extend(new[:room])
        if len(new) > room:
            self._stopped = f"more than max_groups={self._max_groups} groups"
            return
        self._frontier = tuple(g.dn for g in new)

    @property
    def done(self) -> bool:
        return not self.frontier

    def result(self) -> GroupResolution:
        if not self.done:
            raise ValueError("the walk is not over yet")
        return GroupResolution(_sorted(self._found), "walk", complete=not self._stopped,
                               depth=self._depth(), revisits=self._revisits,
                               detail=self._stopped)

    def _depth(self) -> int:
        # the last level fed found nothing new (that is how a walk ends), unless a bound stopped it
        if self._stopped:
            return self._max_depth if "deeper" in self._stopped else self._level
        return max(self._level - 1, 0)
