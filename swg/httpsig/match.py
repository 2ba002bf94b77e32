"""Evaluating one signature against a transaction's buffers (Suricata's content inspection).

Owns the semantics of an inspection: items in rule order against one buffer; an absolute
content searched in [offset, offset + depth); a relative one in [prev + distance, prev +
distance + within) where prev is the end of the previous positive match; `startswith` at 0,
`endswith` at the end; a negated content must not occur in its window and moves nothing;
`isdataat`; `pcre` (relative: searched from prev, `^` anchored there). When a later relative
item fails, earlier positive matches are retried at their next occurrence, as Suricata does,
within a budget of steps (Suricata's inspection recursion limit) so a hostile request cannot
make it exponential. A missing buffer fails the inspection. It must not choose candidate rules
(ruleset.py does) nor build buffers (buffers.py does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from swg.httpsig.model import BufferInspection, ContentMatch, DataAtCheck, HttpSignature, Item, PcreMatch

MAX_STEPS = 3000   # per inspection; Suricata's default inspection recursion limit is 3000

Lowered = Callable[[str], bytes]


def signature_matches(signature: HttpSignature, buffers: Mapping[str, bytes | None],
                      lowered: Lowered) -> bool:
    """All inspections of the signature hold. `lowered(name)` gives the lower-cased buffer (the
    rule set caches it per request: nocase contents and the prefilter share it)."""
    for inspection in signature.inspections:
        data = buffers.get(inspection.buffer)
        if data is None or not inspection_matches(inspection, data, lowered):
            return False
    return True


def inspection_matches(inspection: BufferInspection, data: bytes, lowered: Lowered) -> bool:
    size = len(data)
    for check in inspection.sizes:
        if not check.accepts(size):
            return False
    if not inspection.items:
        return True
    return _Run(inspection.items, data, lowered(inspection.buffer)).matches(0, 0)


class _Run:
    __slots__ = ("items", "data", "low", "steps")

    def __init__(self, items: tuple[Item, ...], data: bytes, low: bytes) -> None:
        self.items = items
        self.data = data
        self.low = low
        self.steps = 0

    def retry(self, index: int) -> bool:
        """A positive match is worth retrying at a later position only if something after it
        depends on where it ended (asked only once a first attempt failed)."""
        return any(_is_relative(later) for later in self.items[index + 1:])

    def matches(self, index: int, prev: int) -> bool:
        if index == len(self.items):
            return True
        self.steps += 1
        if self.steps > MAX_STEPS:
            return False
        item = self.items[index]
        if isinstance(item, ContentMatch):
            return self._content(item, index, prev)
        if isinstance(item, PcreMatch):
            return self._pcre(item, index, prev)
        return _data_at(item, len(self.data), prev) and self.matches(index + 1, prev)

    def _content(self, item: ContentMatch, index: int, prev: int) -> bool:
        haystack = self.low if item.nocase else self.data
        pattern = item.pattern.lower() if item.nocase else item.pattern
        start, end = _window(item, prev, len(haystack))
        if item.endswith:
            start = max(start, end - len(pattern)) if end == len(haystack) else end + 1
        found = haystack.find(pattern, start, end) if start <= end else -1
        if item.negated:
            return found < 0 and self.matches(index + 1, prev)
        while found >= 0:
            if self.matches(index + 1, found + len(pattern)):
                return True
            if self.steps > MAX_STEPS or not self.retry(index):
                return False
            found = haystack.find(pattern, found + 1, end)
        return False

    def _pcre(self, item: PcreMatch, index: int, prev: int) -> bool:
        base = prev if item.relative else 0
        subject = self.data[base:] if base else self.data
        found = item.regex.search(subject)
        if item.negated:
            return found is None and self.matches(index + 1, prev)
        while found is not None:
            if self.matches(index + 1, base + found.end()):
                return True
            if self.steps > MAX_STEPS or found.start() >= len(subject) or not self.retry(index):
                return False
            self.steps += 1
            found = item.regex.search(subject, found.start() + 1)
        return False


def _is_relative(item: Item) -> bool:
    return item.relative


def _window(item: ContentMatch, prev: int, size: int) -> tuple[int, int]:
    if item.startswith:
        return 0, min(size, len(item.pattern))
    if item.relative:
        start = prev + (item.distance or 0)
        end = size if item.within is None else min(size, start + item.within)
        return max(0, start), end
    end = size if item.depth is None else min(size, item.offset + item.depth)
    return item.offset, end


def _data_at(item: DataAtCheck, size: int, prev: int) -> bool:
    position = item.position + (prev if item.relative else 0)
    return (position < size) != item.negated
