"""The policy analyser behind `sekimori policy lint`: finds rules that can never match, rules
that disagree, rules the three-layer guard overrules, rules nobody uses and rules that allow too
much. Pure: it reads a `Policy` (and the prefecture's baseline, and hit counters if the broker
kept them) and returns findings; it evaluates no request and imports neither engine.py nor
guard.py (the guard's invariants are restated here over rule conditions, not requests).

How a rule is read: its conditions describe a set of requests, one dimension at a time (users,
groups, posture profiles, segments, destination, time, source network); an empty condition is
"any". Two rules *overlap* when every dimension has a value both accept; rule A *covers* rule B
when, in every dimension, A accepts everything B accepts. The destination is a finite set of
(app, URL category) pairs: each app with each category it declares (an app that declares none
has an unknown category, so it is never assumed to fall under a category condition), and each
category named anywhere in the policy for destinations that are no app. `apps` and
`app_groups` add up (app groups are expanded to app ids). The analyser never assumes group
membership: two rules naming different groups are not taken to overlap (a user in both would
make them overlap; the directory, not the policy, knows).

Findings (see `Finding.kind`):

- shadowed: an earlier enabled rule of the same layer covers this one, so first-match-wins
  never reaches it (error when the two act differently, warning when it is only redundant).
- contradiction: two enabled rules overlap and decide differently (allow-like vs deny), and the
  later one is not simply shadowed. Within a layer: a warning for a partial overlap, info when
  the earlier rule is narrower than the later (an exception carved out on purpose, or not).
  Baseline deny against a municipal allow that names destinations (apps, app groups or
  categories): an error when the baseline covers the municipal rule (it never takes effect), a
  warning for a partial overlap. A baseline deny narrower than the municipal allow, or one
  under a municipal allow naming no destination, is what baselines are for: not reported.
- guard-overrules: an allow-like rule whose matching requests the three-layer guard refuses,
  entirely (error) or partly (warning).
- never-hit: an enabled rule with no hit in the broker's counters (info; only with `hits`).
- too-broad: an allow-like rule with neither a user/group condition nor a destination
  condition, or one reaching more than `broad_threshold` apps (warning).
- disabled: a disabled rule (info). Disabled rules take no part in the other analyses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from broker.policy.model import (
    ALLOWING,
    ActionKind,
    App,
    Policy,
    PrivateKind,
    Rule,
    SecurityModel,
    TimeWindow,
    Zone,
)
from ztcore.reasons import Reason

__all__ = ["Finding", "lint"]

KINDS: Final = ("disabled", "shadowed", "contradiction", "guard-overrules", "too-broad",
                "never-hit")
WEEK_MINUTES: Final = 7 * 1440
UNKNOWN: Final = "?"          # the category of an app that declares none
DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ZONE_JA: Final = {Zone.INTERNET: "インターネット接続系", Zone.LGWAN: "LGWAN接続系",
                  Zone.MYNUMBER: "マイナンバー利用事務系"}
ALL_SEGMENTS: Final = frozenset(Zone)
ANY_TIME: Final = ((0, WEEK_MINUTES),)
SHOW_MAX: Final = 5

T = TypeVar("T")
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Atom = tuple[str | None, str]        # (app id or None for "no app", URL category or UNKNOWN)


@dataclass(frozen=True)
class Finding:
    kind: str                 # one of KINDS
    rule_id: str              # the rule the finding is about
    other_rule_id: str | None  # the rule that shadows / contradicts it
    message_ja: str
    message_en: str
    severity: str             # "error" | "warning" | "info"


@dataclass(frozen=True)
class _Scope:
    """The set of requests a rule matches, one dimension at a time (None: any)."""
    users: frozenset[str] | None
    groups: frozenset[str] | None
    profiles: frozenset[str] | None
    segments: frozenset[Zone]
    dest: frozenset[Atom]
    times: tuple[tuple[int, int], ...]           # merged week-minute intervals [start, end)
    networks: tuple[Net, ...] | None


@dataclass(frozen=True)
class _World:
    """What the analyser knows about destinations, from the policy and its baseline."""
    apps: Mapping[str, App]
    groups: Mapping[str, tuple[str, ...]]
    universe: frozenset[Atom]
    specific: Mapping[str, frozenset[int]]       # host -> ports of specific communications
    model: SecurityModel


# --- reading rules as sets -----------------------------------------------------------------

def _world(policy: Policy, baseline: Policy | None) -> _World:
    layers = [p for p in (baseline, policy) if p is not None]
    apps = {a.id: a for p in layers for a in p.apps}
    groups = {g: members for p in layers for g, members in p.app_groups}
    categories = {c for p in layers for r in p.rules for c in r.when.categories}
    categories |= {c for a in apps.values() for c in a.categories}
    universe: set[Atom] = {(None, c) for c in categories} | {(None, UNKNOWN)}
    for app in apps.values():
        universe |= {(app.id, c) for c in app.categories or (UNKNOWN,)}
    specific: dict[str, set[int]] = {}
    for sc in (s for p in layers for s in p.specific_communications):
        specific.setdefault(sc.host.lower(), set()).add(sc.port)
    return _World(apps, groups, frozenset(universe),
                  {h: frozenset(ps) for h, ps in specific.items()}, policy.tenant.model)


def _window_intervals(w: TimeWindow) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for day in w.days:
        base = day * 1440
        if w.start_minute < w.end_minute:
            out.append((base + w.start_minute, base + w.end_minute))
        elif w.start_minute > w.end_minute:          # wraps past midnight into the next day
            out.append((base + w.start_minute, base + 1440))
            nxt = (day + 1) % 7 * 1440
            out.append((nxt, nxt + w.end_minute))
    return out


def _merge(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(i for i in intervals if i[0] < i[1]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return tuple(merged)


def _network(text: str) -> Net | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _scope(rule: Rule, world: _World) -> _Scope:
    w = rule.when
    apps = set(w.apps) | {a for g in w.app_groups for a in world.groups.get(g, ())}
    dest = world.universe | {(a, UNKNOWN) for a in apps if a not in world.apps}
    if apps:
        dest = frozenset(x for x in dest if x[0] in apps)
    if w.categories:
        dest = frozenset(x for x in dest if x[1] in w.categories)
    times = _merge(i for tw in w.time_windows for i in _window_intervals(tw)) \
        if w.time_windows else ANY_TIME
    nets = tuple(n for n in map(_network, w.source_networks) if n is not None)
    return _Scope(
        users=frozenset(w.users) or None, groups=frozenset(w.groups) or None,
        profiles=frozenset(w.posture_profiles) or None,
        segments=frozenset(w.segments) or ALL_SEGMENTS, dest=frozenset(dest), times=times,
        networks=nets if w.source_networks else None)


def _is_empty(s: _Scope) -> bool:
    return not s.segments or not s.dest or not s.times or s.networks == ()


# --- covering and overlapping --------------------------------------------------------------

def _set_covers(a: frozenset[T] | None, b: frozenset[T] | None) -> bool:
    return a is None or (b is not None and b <= a)


def _set_meet(a: frozenset[T] | None, b: frozenset[T] | None) -> frozenset[T] | None:
    return b if a is None else a if b is None else a & b


def _times_cover(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    return all(any(sa <= sb and eb <= ea for sa, ea in a) for sb, eb in b)


def _times_meet(a: tuple[tuple[int, int], ...],
                b: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    return _merge((max(sa, sb), min(ea, eb)) for sa, ea in a for sb, eb in b)


def _net_in(x: Net, y: Net) -> bool:
    return x.version == y.version and x.subnet_of(y)  # type: ignore[arg-type]


def _nets_cover(a: tuple[Net, ...] | None, b: tuple[Net, ...] | None) -> bool:
    return a is None or (b is not None and all(any(_net_in(x, y) for y in a) for x in b))


def _nets_meet(a: tuple[Net, ...] | None, b: tuple[Net, ...] | None) -> tuple[Net, ...] | None:
    if a is None or b is None:
        return b if a is None else a
    # two CIDRs either nest or are disjoint: the meet is the smaller of each nesting pair
    return tuple(sorted({x if _net_in(x, y) else y for x in a for y in b
                         if _net_in(x, y) or _net_in(y, x)}, key=str))


def _covers(a: _Scope, b: _Scope) -> bool:
    return (_set_covers(a.users, b.users) and _set_covers(a.groups, b.groups)
            and _set_covers(a.profiles, b.profiles) and b.segments <= a.segments
            and b.dest <= a.dest and _times_cover(a.times, b.times)
            and _nets_cover(a.networks, b.networks))


def _meet(a: _Scope, b: _Scope) -> _Scope | None:
    m = _Scope(_set_meet(a.users, b.users), _set_meet(a.groups, b.groups),
               _set_meet(a.profiles, b.profiles), a.segments & b.segments, a.dest & b.dest,
               _times_meet(a.times, b.times), _nets_meet(a.networks, b.networks))
    if _is_empty(m) or m.users == frozenset() or m.groups == frozenset() \
            or m.profiles == frozenset():
        return None
    return m


# --- describing a set of requests ----------------------------------------------------------

def _listed(items: Iterable[str], ja: bool) -> str:
    shown = sorted(items)
    more = len(shown) - SHOW_MAX
    text = "、".join(shown[:SHOW_MAX]) if ja else ", ".join(shown[:SHOW_MAX])
    if more > 0:
        text += f" ほか{more}件" if ja else f" and {more} more"
    return text


def _format_times(times: tuple[tuple[int, int], ...]) -> str:
    by_range: dict[tuple[int, int], list[int]] = {}
    for s, e in times:
        # split at midnights so each piece names one day
        while s < e:
            day, start = divmod(s, 1440)
            end = min(e, (day + 1) * 1440) - day * 1440
            by_range.setdefault((start, end), []).append(day)
            s = (day + 1) * 1440
    return "; ".join(f"{_days_text(days)} {s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}"
                     for (s, e), days in by_range.items())


def _days_text(days: list[int]) -> str:
    runs: list[list[int]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}"
                    for r in runs)


def _describe(s: _Scope, world: _World) -> tuple[str, str]:
    ja: list[str] = []
    en: list[str] = []
    if s.users is not None:
        ja.append(f"利用者 {_listed(s.users, True)}")
        en.append(f"user {_listed(s.users, False)}")
    if s.groups is not None:
        ja.append(f"グループ {_listed(s.groups, True)} の利用者")
        en.append(f"users in {_listed(s.groups, False)}")
    if s.profiles is not None:
        ja.append(f"端末要件 {_listed(s.profiles, True)} を満たす端末")
        en.append(f"devices meeting {_listed(s.profiles, False)}")
    if s.segments != ALL_SEGMENTS:
        ja.append(f"{_listed((ZONE_JA[z] for z in s.segments), True)} の端末")
        en.append(f"devices on the {_listed((z.value for z in s.segments), False)} segment")
    if s.dest == world.universe:
        ja.append("すべての宛先")
        en.append("any destination")
    else:
        apps = {world.apps[a].name if a in world.apps else a for a, _ in s.dest if a is not None}
        cats = {c for a, c in s.dest if a is None and c != UNKNOWN}
        if apps:
            ja.append(f"アプリ {_listed(apps, True)}")
            en.append(f"app {_listed(apps, False)}")
        if cats:
            ja.append(f"カテゴリ {_listed(cats, True)} のサイト")
            en.append(f"sites in category {_listed(cats, False)}")
    if s.times != ANY_TIME:
        ja.append(f"時間帯 {_format_times(s.times)}")
        en.append(f"at {_format_times(s.times)}")
    if s.networks is not None:
        ja.append(f"接続元 {_listed(map(str, s.networks), True)}")
        en.append(f"from {_listed(map(str, s.networks), False)}")
    if len(ja) == 1 and s.dest == world.universe:
        return "すべての要求", "every request"
    return "、".join(ja), "; ".join(en)


# --- the three-layer guard over rule conditions --------------------------------------------

def _specific_status(app: App, world: _World) -> str:
    """'all' when every host and port of the app is a specific communication, 'some', 'none'."""
    hits = [h.lower() in world.specific and bool(app.ports)
            and set(app.ports) <= world.specific[h.lower()] for h in app.hosts]
    return "all" if hits and all(hits) else "some" if any(
        h.lower() in world.specific for h in app.hosts) else "none"


def _guard_case(segment: Zone, app: App | None, category: str, rule: Rule,
                world: _World) -> tuple[str, Reason | None]:
    """What the guard does to the requests of (segment, app) that this rule allows:
    ('ok', None), ('refused', reason) for all of them, or ('partly', reason) for some."""
    zone = app.zone if app is not None else Zone.INTERNET
    if segment is Zone.MYNUMBER:
        # only specific communications, whatever the zone (a mynumber app is reached inside
        # the closed segment, never through the broker); a destination that is no app may be
        # a specific communication only when its category is unknown
        if app is not None:
            status = _specific_status(app, world)
        else:
            status = "some" if world.specific and category == UNKNOWN else "none"
        if status == "all":
            return "ok", None
        return ("partly" if status == "some" else "refused"), Reason.ZONE_MYNUMBER_SPECIFIC_ONLY
    if zone is Zone.MYNUMBER:           # from the internet and the lgwan segment alike
        return "refused", Reason.ZONE_MYNUMBER_FORBIDDEN
    if segment is Zone.INTERNET and zone is Zone.LGWAN:
        if world.model is SecurityModel.ALPHA:
            if app is None or app.private_kind is not PrivateKind.VDI:
                return "refused", Reason.ZONE_LGWAN_VDI_ONLY
        elif not (rule.action.kind is ActionKind.REQUIRE_MFA and rule.when.posture_profiles):
            # requests with MFA from a compliant device pass; the rule does not demand them
            return "partly", Reason.ZONE_LGWAN_NEEDS_MFA_AND_POSTURE
    return "ok", None


def _asked(rule: Rule, segment: Zone, app: App | None) -> bool:
    """Whether the rule asks for this (segment, destination) rather than covering it by saying
    nothing: a rule without a segment condition is not asking for My Number devices, and one
    without a destination condition is not asking for My Number apps."""
    w = rule.when
    if not w.segments and segment is Zone.MYNUMBER:
        return False
    names_destination = bool(w.apps or w.app_groups or w.categories)
    return names_destination or app is None or app.zone is not Zone.MYNUMBER


def _guard_finding(rule: Rule, scope: _Scope, world: _World) -> Finding | None:
    """Entirely overruled (error) when the guard refuses every request the rule matches;
    partly (warning) when it refuses some of the requests the rule asks for (`_asked`)."""
    verdicts: dict[Reason, list[str]] = {}       # asked-for cases the guard refuses
    every: dict[Reason, list[str]] = {}          # all of them
    cases = refused = 0
    atoms = sorted(scope.dest, key=lambda x: (x[0] is not None, x[0] or "", x[1]))
    for segment in sorted(scope.segments, key=lambda z: z.value):
        for app_id, category in atoms:
            cases += 1
            app = world.apps.get(app_id) if app_id is not None else None
            verdict, reason = _guard_case(segment, app, category, rule, world)
            refused += verdict == "refused"
            if reason is None:
                continue
            label = f"{segment.value}→{app.name if app else '(other destinations)'}"
            for found in (every, verdicts) if _asked(rule, segment, app) else (every,):
                labels = found.setdefault(reason, [])
                if label not in labels:
                    labels.append(label)
    if cases == 0 or (not verdicts and refused < cases):
        return None
    if refused == cases:
        verdicts = every
    detail_ja = "; ".join(f"{_listed(v, True)}（{r.value}）" for r, v in verdicts.items())
    detail_en = "; ".join(f"{_listed(v, False)} ({r.value})" for r, v in verdicts.items())
    if refused == cases:
        return Finding("guard-overrules", rule.id, None,
                       f"三層分離ガードがこのルールの許可をすべて拒否します: {detail_ja}",
                       f"The three-layer guard refuses everything this rule allows: {detail_en}",
                       "error")
    return Finding("guard-overrules", rule.id, None,
                   f"三層分離ガードがこのルールの許可を一部拒否します: {detail_ja}",
                   f"The three-layer guard partly overrules this rule: {detail_en}", "warning")


# --- the analysis --------------------------------------------------------------------------

def _allowing(rule: Rule) -> bool:
    return rule.action.kind in ALLOWING


def _verb(rule: Rule) -> tuple[str, str]:
    return ("許可", "allows") if _allowing(rule) else ("拒否", "denies")


def _shadowed(rules: list[tuple[Rule, _Scope]]) -> dict[str, Finding]:
    found: dict[str, Finding] = {}
    for j, (later, ls) in enumerate(rules):
        if _is_empty(ls):
            continue
        for earlier, es in rules[:j]:
            if earlier.id not in found and _covers(es, ls):
                same = earlier.action == later.action
                found[later.id] = Finding(
                    "shadowed", later.id, earlier.id,
                    f"先にあるルール {earlier.id} がこのルールの条件をすべて含むため、このルールは"
                    f"一致しません" + ("（重複）" if same else
                                        f"（{earlier.id} の動作 {earlier.action.kind.value} が適用されます）"),
                    f"Rule {earlier.id} comes first and matches every request this rule would, "
                    f"so this rule never matches" + (" (redundant)" if same else
                                                     f" ({earlier.id}'s {earlier.action.kind.value} "
                                                     f"applies instead)"),
                    "warning" if same else "error")
                break
    return found


def _contradiction(earlier: Rule, es: _Scope, later: Rule, ls: _Scope, world: _World,
                   cross: bool) -> Finding | None:
    overlap = _meet(es, ls)
    if overlap is None:
        return None
    ja, en = _describe(overlap, world)
    ev_ja, ev_en = _verb(earlier)
    lv_ja, lv_en = _verb(later)
    if cross:
        w = later.when
        if _covers(ls, es) or not (w.apps or w.app_groups or w.categories):
            return None                  # the baseline carves a deny out of a broad allow
        severity = "error" if _covers(es, ls) else "warning"
        return Finding(
            "contradiction", later.id, earlier.id,
            f"{ja} について、このルールは{lv_ja}しますが、都道府県ベースラインのルール {earlier.id} "
            f"が{ev_ja}し、ベースラインの拒否は上書きできません"
            + ("（このルールは効果がありません）" if severity == "error" else ""),
            f"For {en}: this rule {lv_en}, but baseline rule {earlier.id} {ev_en} them and a "
            f"baseline deny cannot be overridden"
            + (" (this rule has no effect)" if severity == "error" else ""), severity)
    exception = _covers(ls, es)
    return Finding(
        "contradiction", later.id, earlier.id,
        f"{ja} について、先のルール {earlier.id} が{ev_ja}し、このルールは{lv_ja}します。"
        f"先のルールが優先されます" + ("（例外として意図したものか確認してください）"
                                       if exception else ""),
        f"For {en}: rule {earlier.id} comes first and {ev_en} them, this rule {lv_en} them; "
        f"the earlier rule wins" + (" (check that the exception is intended)"
                                    if exception else ""),
        "info" if exception else "warning")


def _too_broad(rule: Rule, scope: _Scope, world: _World, threshold: int) -> Finding | None:
    w = rule.when
    if not (w.users or w.groups) and not (w.apps or w.app_groups or w.categories):
        return Finding("too-broad", rule.id, None,
                       "利用者・グループの条件も宛先の条件もない許可ルールです（全員にすべてを許可）",
                       "An allow rule with neither a user/group condition nor a destination "
                       "condition: it lets everyone reach everything", "warning")
    apps = {a for a, _ in scope.dest if a is not None}
    if len(apps) > threshold:
        return Finding("too-broad", rule.id, None,
                       f"{len(apps)} 個のアプリを許可しています（上限 {threshold}）",
                       f"It allows {len(apps)} apps (more than {threshold})", "warning")
    return None


def lint(policy: Policy, baseline: Policy | None = None, hits: Mapping[str, int] | None = None,
         *, broad_threshold: int = 50) -> list[Finding]:
    """Every finding about `policy`'s rules, in rule order (for one rule: in `KINDS` order).
    `baseline` is the prefecture's policy, checked for denies the municipality cannot
    override; `hits` maps rule ids to how often the broker matched them."""
    world = _world(policy, baseline)
    own = [(r, _scope(r, world)) for r in policy.rules if r.enabled]
    base = [(r, _scope(r, world)) for r in baseline.rules if r.enabled] if baseline else []
    shadowed = _shadowed(own)
    base_live = [(r, s) for r, s in base if r.id not in _shadowed(base)]
    live = [(r, s) for r, s in own if r.id not in shadowed and not _is_empty(s)]
    findings: list[Finding] = list(shadowed.values())
    for rule in policy.rules:
        if not rule.enabled:
            findings.append(Finding("disabled", rule.id, None, "無効にされたルールです",
                                    "The rule is disabled", "info"))
    for j, (later, ls) in enumerate(live):
        for b, bs in base_live:
            if not _allowing(b) and _allowing(later):
                f = _contradiction(b, bs, later, ls, world, cross=True)
                if f is not None:
                    findings.append(f)
        for earlier, es in live[:j]:
            if _allowing(earlier) != _allowing(later):
                f = _contradiction(earlier, es, later, ls, world, cross=False)
                if f is not None:
                    findings.append(f)
    for rule, scope in own:
        if not _allowing(rule):
            continue
        for maybe in (_guard_finding(rule, scope, world),
                      _too_broad(rule, scope, world, broad_threshold)):
            if maybe is not None:
                findings.append(maybe)
    if hits is not None:
        findings += [Finding("never-hit", r.id, None, "このルールは一度も一致していません",
                             "The rule has never matched", "info")
                     for r, _ in own if hits.get(r.id, 0) == 0]
    order = {r.id: i for i, r in enumerate(policy.rules)}
    return sorted(findings, key=lambda f: (order.get(f.rule_id, len(order)), KINDS.index(f.kind)))
