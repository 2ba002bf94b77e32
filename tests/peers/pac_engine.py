"""An independent PAC engine for the PAC tests: npm `pac-resolver` running the PAC in QuickJS.

pac-resolver (TooTallNate's, the engine behind `pac-proxy-agent`) brings its own `shExpMatch`
and `isInNet` and runs the PAC in QuickJS compiled to WebAssembly (npm `quickjs-wasi`), so it
shares no code with agent/pac.py nor with ztcore/breakout.py. Both packages are pinned in
`pac/package.json` and driven by `pac/evaluate.mjs`.

pac-resolver 9 takes a `quickjs-wasi` VM (`await QuickJS.create()`), where version 7 took
`getQuickJS()` of `quickjs-emscripten` (its README still says so); quickjs-wasi is pinned to
the newest release in pac-resolver's peer range (^2.2.0).

`ensure_installed` runs `npm install` once into a cache folder outside the repository (so no
node_modules lands in the work tree), `~/.cache/sekimori/pac-peer-<digest of package.json>` (a
new pin installs afresh), under a lock so parallel test processes do not install at once.
`PacEngine.evaluate` writes the PAC and the [url, host] pairs to a temporary folder and asks ONE
node process for all the answers (about 1 s to load the engine and compile a PAC of Microsoft's
whole list, then under 1 ms a URL). `start_engine` is what a test fixture calls: it
installs if need be and skips the test, with the reason, when node or npm are missing or the
install fails.

Needs Node.js 20+ and npm; the first install needs the npm registry (a few seconds).

    .venv/bin/python -m tests.peers.pac_engine PAC_FILE URL [URL ...]   # print each answer
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PEER_DIR = Path(__file__).resolve().parent / "pac"
PACKAGE_JSON = PEER_DIR / "package.json"
SCRIPT = PEER_DIR / "evaluate.mjs"
PACKAGES = ("pac-resolver", "quickjs-wasi")


def cache_dir() -> Path:
    """Where the pinned packages are installed: one folder per content of package.json."""
    digest = hashlib.sha256(PACKAGE_JSON.read_bytes()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sekimori" / f"pac-peer-{digest}"


def unavailable() -> str | None:
    """Why this peer cannot run on this machine, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return (f"{tool} is not installed (the PAC engine peer needs Node.js 20+ and npm: "
                    "apt-get install nodejs npm)")
    return None


def _installed(folder: Path) -> bool:
    return all((folder / "node_modules" / name / "package.json").exists() for name in PACKAGES)


def ensure_installed(timeout_seconds: float = 300.0) -> Path:
    """`npm install` the pinned packages into the cache folder if they are missing; the folder.

    `--no-package-lock`: the pinned dependencies are the contract; no lockfile is written. The
    folder is filled under a temporary name and renamed, so a failed install leaves nothing
    that looks installed.
    """
    folder = cache_dir()
    if _installed(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(tempfile.gettempdir()) / "sekimori-pac-peer-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(folder):
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
        try:
            shutil.copyfile(PACKAGE_JSON, staging / "package.json")
            out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
                                 cwd=staging, capture_output=True, text=True,
                                 timeout=timeout_seconds, stdin=subprocess.DEVNULL)
            if out.returncode != 0 or not _installed(staging):
                raise RuntimeError(f"npm install of {PACKAGE_JSON} failed ({out.returncode}):\n"
                                   f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def url_host(url: str) -> str:
    """The `host` argument a browser passes with `url`: the host name, IPv6 without brackets."""
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    return host


@dataclass(frozen=True)
class PacEngine:
    modules: Path

    def evaluate(self, pac: str, urls: Sequence[str | tuple[str, str]], *,
                 is_in_net_ex: bool = False, timeout_seconds: float = 120.0) -> list[str]:
        """FindProxyForURL for each URL (or [url, host] pair), in one node process.
        `is_in_net_ex` gives the PAC Chromium's isInNetEx (pac-resolver has none)."""
        pairs = [[u, url_host(u)] if isinstance(u, str) else list(u) for u in urls]
        with tempfile.TemporaryDirectory(prefix="sekimori-pac-") as tmp:
            pac_file, pairs_file = Path(tmp) / "proxy.pac", Path(tmp) / "pairs.json"
            pac_file.write_text(pac, encoding="utf-8")
            pairs_file.write_text(json.dumps(pairs), encoding="utf-8")
            command = ["node", str(SCRIPT), "--modules", str(self.modules),
                       *(["--isinnetex"] if is_in_net_ex else []), str(pac_file), str(pairs_file)]
            out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds,
                                 stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"evaluate.mjs failed ({out.returncode}): {out.stderr[-3000:]}")
        results = json.loads(out.stdout)
        if not isinstance(results, list) or len(results) != len(pairs):
            raise RuntimeError(f"evaluate.mjs answered {out.stdout[:300]!r} for {len(pairs)} URLs")
        return [str(r) for r in results]


def start_engine() -> PacEngine:
    """The engine, installed if need be; pytest.skip with the reason when it cannot run.

        @pytest.fixture(scope="module")
        def engine() -> PacEngine:
            return start_engine()
    """
    why = unavailable()
    if why is not None:
        pytest.skip(why)
    try:
        return PacEngine(ensure_installed())
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the PAC engine peer could not be installed: {exc}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    why = unavailable()
    if why:
        print(why, file=sys.stderr)
        return 1
    pac = Path(argv[1]).read_text(encoding="utf-8")
    for url, answer in zip(argv[2:], PacEngine(ensure_installed()).evaluate(pac, argv[2:])):
        print(f"{url}\t{answer}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
