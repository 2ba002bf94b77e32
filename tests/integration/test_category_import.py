"""swg/runtime/category_import.py on the real lists in ../shared/data (UT1 malware and phishing,
the Block List Project's phishing list): counts against PROVENANCE.md, known entries and
non-entries, a rich progress bar, and a reload that fails leaving the old index in force.

The lists are never part of the repository (UT1 is CC BY-SA): without ../shared/data these tests
skip, saying so.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from swg.runtime.category_import import (
    CategoryIndexSlot,
    ImportReport,
    ListSource,
    import_host_list,
    import_lists,
    import_squidguard_directory,
    squidguard_sources,
)
from swg.urlcategories import EMPTY_INDEX, CategoryIndex, CategoryListError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
UT1 = DATA / "ut1-blacklists" / "blacklists"
BLOCKLIST = DATA / "blocklistproject-lists" / "alt-version"

needs_ut1 = pytest.mark.skipif(not (UT1 / "malware" / "domains").is_file(),
                               reason=f"UT1 lists not found at {UT1} (../shared/data is outside the "
                                      "repository; the product never ships them)")
needs_blocklist = pytest.mark.skipif(not (BLOCKLIST / "phishing-nl.txt").is_file(),
                                     reason=f"Block List Project lists not found at {BLOCKLIST}")

# Lines per file, from ut1-blacklists/PROVENANCE.md and blocklistproject-lists/PROVENANCE.md.
UT1_LINES = {("malware", "domains"): 218_441, ("malware", "urls"): 19_226,
             ("phishing", "domains"): 218_382, ("phishing", "urls"): 19_460}
BLOCKLIST_PHISHING_ENTRIES = 190_215


@pytest.fixture(scope="module")
def ut1() -> tuple[CategoryIndex, ImportReport, float]:
    if not (UT1 / "malware" / "domains").is_file():
        pytest.skip(f"UT1 lists not found at {UT1}")
    started = time.perf_counter()
    index, report = import_squidguard_directory(UT1, categories=["malware", "phishing"])
    return index, report, time.perf_counter() - started


@needs_ut1
def test_ut1_counts_match_provenance(ut1: tuple[CategoryIndex, ImportReport, float]) -> None:
    index, report, seconds = ut1
    assert index.categories == ("malware", "phishing")
    for item in report.categories:
        assert item.skipped == 0, item.reasons
        for file in item.files:
            kind = file.where.rpartition("/")[2]
            if (item.category, kind) in UT1_LINES:
                # every line is an entry or a duplicate: nothing in these files is refused
                assert file.entries + file.duplicates + file.skipped == UT1_LINES[item.category, kind]
        assert item.seconds > 0
    malware = report.category("malware")
    assert [f.where for f in malware.files] == ["malware/domains", "malware/urls", "malware/expressions"]
    assert malware.files[0].entries == 218_441 and malware.files[2].entries == 1
    assert report.category("phishing").files[0].entries == 218_382
    assert report.entries == sum(index.sizes.values()) and report.keys == index.keys
    assert seconds < 20


@needs_ut1
@pytest.mark.parametrize("host,path,expected", [
    ("0-1-x.009418154.xyz", "/", ("malware", "phishing")),        # first line of both lists
    ("deep.below.0-1-x.009418154.xyz", "/", ("malware", "phishing")),
    ("009418154.xyz", "/", ()),                                   # its parent is not listed
    ("0009809app34.weebly.com", "/", ("malware",)),               # malware only
    ("weebly.com", "/", ()),
    ("0088.top", "/", ("phishing",)),                             # phishing only
    ("103.126.116.235", "/", ("malware",)),                       # an address in malware/domains
    ("0001-5cf.pages.dev", "/awards", ("malware", "phishing")),   # a URL prefix in both urls files
    ("0001-5cf.pages.dev", "/awards/2024", ("malware", "phishing")),
    ("0001-5cf.pages.dev", "/elsewhere", ()),
    ("pages.dev", "/awards", ()),
    ("198.51.100.7", "/search?q=1234", ("malware",)),             # malware/expressions
    ("google.com", "/", ()),
    ("www.city.yokohama.lg.jp", "/", ()),
    ("yahoo.co.jp", "/search?q=1", ()),
])
def test_ut1_known_entries_and_non_entries(ut1: tuple[CategoryIndex, ImportReport, float], host: str,
                                           path: str, expected: tuple[str, ...]) -> None:
    index, _, _ = ut1
    assert index.lookup(host, path) == expected


@needs_blocklist
def test_block_list_project_host_list() -> None:
    index, report = import_host_list(BLOCKLIST / "phishing-nl.txt", "phishing")
    item = report.category("phishing")
    assert (item.entries, item.skipped) == (BLOCKLIST_PHISHING_ENTRIES, 0), item.reasons
    assert index.lookup_host("0001interac.com") == ("phishing",)
    assert index.lookup_host("www.0001interac.com") == ("phishing",)   # listed on its own
    assert index.lookup_host("login.0001interac.com") == ()      # exact host names, not suffixes
    assert index.lookup_host("0.01.2.13.3.sydneypropertyinvestors.com") == ("phishing",)
    assert index.lookup_host("sydneypropertyinvestors.com") == ()


@needs_ut1
@needs_blocklist
def test_two_sources_feed_one_category_with_a_progress_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    sources = [*squidguard_sources(UT1, ["phishing"]),
               ListSource("phishing", BLOCKLIST / "phishing-nl.txt", "hosts"),
               ListSource("scam", BLOCKLIST / "scam-nl.txt", "hosts")]
    index, report = import_lists(sources, console=console)
    assert index.categories == ("phishing", "scam")
    phishing = report.category("phishing")
    assert [f.where for f in phishing.files] == ["phishing/domains", "phishing/urls",
                                                 "phishing/phishing-nl.txt"]
    # domains (suffixes) and hosts (exact) are kept apart: UT1 and the host list do not merge
    assert phishing.entries == index.sizes["phishing"] == 218_382 + (19_460 - 68) + BLOCKLIST_PHISHING_ENTRIES
    assert index.lookup_host("0001interac.com")[0] == "phishing"   # from the host list
    assert index.lookup_host("x.0088.top") == ("phishing",)        # from UT1's domains
    assert "category lists" in out.getvalue()


def test_a_failed_reload_leaves_the_old_index_in_force(tmp_path: Path) -> None:
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "domains").write_text("adult.example\n.other.example\nbad..line\n")
    (tmp_path / "adult" / "urls").write_text("www.example.org/adult\n")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "domains").write_bytes(b"\x00\x01\x02")
    slot = CategoryIndexSlot()
    assert slot.index is EMPTY_INDEX
    report = slot.reload(squidguard_sources(tmp_path, ["adult"]))
    first = slot.index
    assert first.lookup("x.other.example") == ("adult",)
    assert first.lookup("www.example.org", "/adult/1") == ("adult",)
    assert report.category("adult").skipped == 1
    assert "adult/domains: line 3: empty label" in report.category("adult").reasons[0]
    with pytest.raises(CategoryListError, match="binary/domains: not a text file"):
        slot.reload(squidguard_sources(tmp_path))
    with pytest.raises(CategoryListError, match="cannot read"):
        slot.reload([ListSource("x", tmp_path / "missing.txt", "hosts")])
    with pytest.raises(CategoryListError, match="no category nope"):
        squidguard_sources(tmp_path, ["nope"])
    with pytest.raises(CategoryListError, match="limit"):
        import_lists(squidguard_sources(tmp_path, ["adult"]), max_file_bytes=10)
    assert slot.index is first
