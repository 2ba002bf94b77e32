"""Real posture collection on this Linux machine (agent/runtime/posture_runner.py), checked for
well-formed, plausible facts and against independent readings of the same machine: the stdlib's
os-release parser, /etc/machine-id, /proc/mounts and sysfs. And the real Runner's own promises:
no shell, a timeout that kills, LC_ALL=C, a system PATH, the cache of slow sources."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import pytest

from agent.posture import PRODUCTS
from agent.runtime.posture_runner import SubprocessRunner, collect_here, os_family, system_runner
from ztcore.posture import PostureFacts, facts_from_json, parse_version

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

Collected = tuple[PostureFacts, float, float]
# The fact -> the prefix of the error that must explain it when it is unknown.
EXPLAINED_BY = {"os_version": "os:", "last_security_update": "last_security_update:",
                "disk_encrypted": "disk_encryption:", "firewall_on": "firewall:",
                "screen_lock": "screen_lock:", "domain_joined": "domain:",
                "hardware_id": "hardware_id:"}


@pytest.fixture(scope="module")
def collected() -> Collected:
    before = time.time()
    facts = collect_here("9.8.7", before)
    after = time.time()
    print("\n" + json.dumps(facts.to_json_dict(), indent=1, ensure_ascii=False))
    print(f"collection took {after - before:.2f} s")
    assert facts_from_json(facts.to_json_dict()) == facts
    return facts, before, after


def test_facts_are_well_formed_and_plausible(collected: Collected) -> None:
    facts, before, after = collected
    assert facts.os_family == "linux"
    assert parse_version(facts.os_version) is not None
    assert facts.hardware_id
    assert facts.agent_version == "9.8.7"
    assert before <= facts.collected_at <= after
    update = facts.last_security_update
    assert update is None or 946684800 <= update <= after + 86400
    assert set(facts.edr_running) <= {p.name for p in PRODUCTS}
    assert facts.screen_lock_timeout_seconds is None or facts.screen_lock is True
    assert (facts.encryption_method != "") == (facts.disk_encrypted is True)


def test_every_unknown_fact_says_why(collected: Collected) -> None:
    facts, _, _ = collected
    for fact, prefix in EXPLAINED_BY.items():
        if getattr(facts, fact) in (None, ""):
            assert any(e.startswith(prefix) for e in facts.errors), (fact, facts.errors)
    if facts.screen_lock is True and facts.screen_lock_timeout_seconds is None:
        assert any(e.startswith("screen_lock_timeout:") for e in facts.errors)


def test_os_matches_the_stdlib_reading_of_os_release(collected: Collected) -> None:
    facts, _, _ = collected
    release = platform.freedesktop_os_release()
    version = facts.os_version
    assert version == release["VERSION_ID"] or version.startswith(release["VERSION_ID"] + ".")
    assert facts.os_name.startswith(release.get("PRETTY_NAME", release["NAME"]))
    assert platform.release() in facts.os_name


def test_hardware_id_is_this_machines_id(collected: Collected) -> None:
    facts, _, _ = collected
    candidates = []
    for path in ("/sys/class/dmi/id/product_uuid", "/etc/machine-id"):
        try:
            candidates.append(Path(path).read_text().strip())
        except OSError:
            pass
    assert facts.hardware_id in candidates


def test_disk_encryption_agrees_with_proc_mounts_and_sysfs(collected: Collected) -> None:
    facts, _, _ = collected
    root = [line.split() for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1:2] == ["/"]][-1]
    source, fstype = root[0], root[2]
    if fstype == "overlay":
        assert facts.disk_encrypted is None
        assert any("container" in e for e in facts.errors)
        return
    device = os.path.basename(os.path.realpath(source))
    if not device.startswith("dm-"):
        slaves = Path(f"/sys/class/block/{device}/slaves")
        if not slaves.exists() or not any(slaves.iterdir()):
            assert facts.disk_encrypted is False   # a plain device: nothing under it
            return
    uuid = Path(f"/sys/class/block/{device}/dm/uuid")
    if uuid.exists() and uuid.read_text().startswith("CRYPT-"):
        assert facts.disk_encrypted is True


def test_the_runner_runs_no_shell_and_sets_the_c_locale() -> None:
    runner = system_runner()
    echoed = runner.run(("printf", "%s|%s|%s", "$(id)", "*", "a b"), 5)
    assert (echoed.returncode, echoed.stdout) == (0, "$(id)|*|a b")
    env = runner.run(("env",), 5)
    assert "LC_ALL=C" in env.stdout.splitlines()
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin" in env.stdout
    failed = runner.run(("ls", "/nonexistent-sekimori"), 5)
    assert failed.returncode not in (0, None) and "No such file" in failed.stderr


def test_the_runner_reports_missing_tools_and_unreadable_files(tmp_path: Path) -> None:
    runner = system_runner()
    assert runner.run(("sekimori-no-such-tool",), 5).error == "not found"
    assert runner.run((str(tmp_path / "missing"),), 5).error == "not found"
    assert runner.read(str(tmp_path / "missing")) is None
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfState ON\r\n")
    assert runner.read(str(tmp_path / "bom.txt")) == "State ON\r\n"


def test_a_timeout_kills_the_command_and_its_children() -> None:
    runner = system_runner()
    start = time.monotonic()
    result = runner.run(("sh", "-c", "sleep 30 & sleep 30"), 0.3)
    assert time.monotonic() - start < 10
    assert result.returncode is None and result.error == "timed out after 0.3 s"


def test_slow_sources_are_cached_until_they_expire() -> None:
    now = [0.0]
    argv = ("date", "+%s%N")
    runner = SubprocessRunner(os.environ, ["/usr/bin", "/bin"], cacheable={argv},
                              cache_seconds=60, clock=lambda: now[0])
    first = runner.run(argv, 5).stdout
    assert runner.run(argv, 5).stdout == first
    now[0] = 61.0
    assert runner.run(argv, 5).stdout != first
    assert runner.run(("date", "+%N"), 5).stdout != runner.run(("date", "+%N"), 5).stdout


def test_platform_names() -> None:
    assert [os_family(p) for p in ("linux", "win32", "darwin", "freebsd14")] == \
        ["linux", "windows", "macos", "unknown"]
