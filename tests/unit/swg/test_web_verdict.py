"""swg/web_verdict.py: IOC first, then the tenant's lists, then blocked categories; the first
category goes to the policy."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from swg.ioc import IocIndex, parse_csv
from swg.urlcategories import CategoryIndex, CategoryList, TenantLists
from swg.web_verdict import WebLists, judge
from ztcore.reasons import Reason

FEED = parse_csv("type,value\ndomain,evil.example\nip,198.51.100.0/24\nurl,https://cdn.example/bad/\n", "soc")


def lists(block: tuple[str, ...] = (), allow: tuple[str, ...] = ()) -> WebLists:
    index = CategoryIndex.build({"phishing": CategoryList(domains=("phish.example", "evil.example")),
                                 "news": CategoryList(domains=("news.example",))})
    return WebLists(index, MappingProxyType({"city": IocIndex.merge([FEED])}),
                    MappingProxyType({"city": TenantLists(allow, block)}))


@pytest.mark.parametrize("host, kwargs, reason, category", [
    ("a.evil.example", {}, Reason.IOC_MATCH, "phishing"),
    ("ok.example", {"address": "198.51.100.9"}, Reason.IOC_MATCH, None),
    ("cdn.example", {"url": "https://cdn.example/bad/x.js"}, Reason.IOC_MATCH, None),
    ("cdn.example", {"url": "https://cdn.example/good/x.js"}, None, None),
    ("www.phish.example", {}, Reason.URL_CATEGORY_BLOCKED, "phishing"),
    ("news.example", {}, None, "news"),
])
def test_order_and_reasons(host: str, kwargs: dict[str, str], reason: Reason | None, category: str | None) -> None:
    verdict = judge(lists(), "city", host, **kwargs)  # type: ignore[arg-type]
    assert (verdict.decision.reason if verdict.decision else None) is reason
    assert verdict.url_category == category


def test_tenant_lists_and_their_limits() -> None:
    allowed = judge(lists(allow=("phish.example",)), "city", "phish.example")
    assert allowed.decision is None and allowed.custom == "allow: phish.example"
    # an allow never lifts an IOC
    assert judge(lists(allow=("evil.example",)), "city", "evil.example").decision.reason is Reason.IOC_MATCH
    blocked = judge(lists(block=("*.news.example",)), "city", "www.news.example")
    assert blocked.decision is not None and blocked.decision.reason is Reason.URL_CATEGORY_BLOCKED
    # another tenant has neither the feed nor the lists
    other = judge(lists(block=("news.example",)), "town", "evil.example")
    assert other.ioc is None and other.decision is not None and "category phishing" in other.decision.detail
    assert other.audit_extra() == {"categories": "phishing"}
