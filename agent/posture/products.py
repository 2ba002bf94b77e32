"""The EDR / anti-virus products the agent recognises, and which of them are running.

A product is known by the names its processes run under (Windows, macOS, Linux), its Windows
service names and its macOS bundle ids (which appear in the paths `ps -axo comm` prints for
system extensions). The list is data: a tenant can replace it (`parse_products`) without a new
agent. Matching is pure: the collector passes the process and service names it listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ztcore.errors import ConfigError

# Linux truncates a process's comm to 15 bytes (TASK_COMM_LEN - 1).
COMM_LENGTH: Final = 15


@dataclass(frozen=True, slots=True)
class Product:
    name: str                         # canonical name, reported in edr_running
    processes: tuple[str, ...] = ()   # process names ("MsMpEng.exe", "falcond"), any case
    services: tuple[str, ...] = ()    # Windows service names
    bundle_ids: tuple[str, ...] = ()  # macOS bundle ids, matched as path components


PRODUCTS: Final[tuple[Product, ...]] = (
    Product("Microsoft Defender",
            processes=("MsMpEng.exe", "MsSense.exe", "wdavdaemon"),
            services=("WinDefend", "Sense"),
            bundle_ids=("com.microsoft.wdav",)),
    Product("CrowdStrike Falcon",
            processes=("CSFalconService.exe", "falcond", "falcon-sensor"),
            services=("CSFalconService", "CSAgent"),
            bundle_ids=("com.crowdstrike.falcon",)),
    Product("Trend Micro Apex One",
            processes=("PccNTMon.exe", "TmListen.exe", "NTRtScan.exe", "TmCCSF.exe", "ds_agent",
                       "iCoreService"),
            services=("TmListen", "ntrtscan", "TMBMServer", "ds_agent"),
            bundle_ids=("com.trendmicro.icore",)),
    Product("SentinelOne",
            processes=("SentinelAgent.exe", "SentinelAgent", "sentineld", "s1-agent"),
            services=("SentinelAgent",),
            bundle_ids=("com.sentinelone",)),
    Product("ESET",
            processes=("ekrn.exe", "esets_daemon", "esets_proxy", "oaeventd"),
            services=("ekrn",),
            bundle_ids=("com.eset",)),
    Product("Sophos",
            processes=("SophosED.exe", "SophosHealth.exe", "sophos_watchdog", "SophosScanD",
                       "sophos_managementagent"),
            services=("Sophos Endpoint Defense Service", "SntpService", "sophos-spl"),
            bundle_ids=("com.sophos",)),
    Product("Symantec Endpoint Protection",
            processes=("ccSvcHst.exe", "SepMasterService", "rtvscand"),
            services=("SepMasterService",),
            bundle_ids=("com.symantec",)),
    Product("Trellix Endpoint Security",
            processes=("mfemms.exe", "masvc.exe", "mfetp", "isectpd"),
            services=("mfemms", "masvc"),
            bundle_ids=("com.mcafee", "com.trellix")),
    Product("Cybereason",
            processes=("minionhost.exe", "CybereasonActiveProbe.exe", "ActiveProbe"),
            services=("CybereasonActiveProbe",),
            bundle_ids=("com.cybereason",)),
    Product("Palo Alto Cortex XDR",
            processes=("cyserver.exe", "cyserver", "traps_pmd"),
            services=("cyserver",),
            bundle_ids=("com.paloaltonetworks.traps",)),
    Product("Kaspersky Endpoint Security",
            processes=("avp.exe", "kesl", "klnagent"),
            services=("AVP",),
            bundle_ids=("com.kaspersky",)),
    Product("VMware Carbon Black",
            processes=("RepMgr.exe", "cbdaemon", "cbagentd"),
            services=("CbDefense",),
            bundle_ids=("com.vmware.carbonblack",)),
    Product("Elastic Defend",
            processes=("elastic-endpoint.exe", "elastic-endpoint"),
            services=("ElasticEndpoint",),
            bundle_ids=("co.elastic.endpoint",)),
    Product("ClamAV",
            processes=("clamd", "clamd.exe", "freshclam", "clamonacc"),
            services=("ClamAV ClamD",)),
)


def _process_key(name: str) -> str:
    """"msmpeng" for "MsMpEng.exe", "C:\\...\\MsMpEng.exe" or "MsMpEng"; the last path part."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip().lower()
    return base[:-4] if base.endswith(".exe") else base


def _bundle_match(path: str, bundle_id: str) -> bool:
    wanted = bundle_id.lower()
    for part in path.lower().split("/"):
        if part == wanted or part.startswith(wanted + "."):
            return True
    return False


def running_products(process_names: Iterable[str], products: Sequence[Product] = PRODUCTS, *,
                     service_names: Iterable[str] = ()) -> tuple[str, ...]:
    """The canonical names of the products with a running process or service, in list order.

    `process_names` may be bare names (Get-Process, /proc/*/comm) or paths (`ps -axo comm` on
    macOS); a 15-character name matches a longer product process name it starts (Linux comm)."""
    paths = [name for name in process_names if name.strip()]
    keys = {_process_key(name) for name in paths}
    truncated = {key for key in keys if len(key) == COMM_LENGTH}
    services = {name.strip().lower() for name in service_names}
    found = []
    for product in products:
        wanted = {_process_key(p) for p in product.processes}
        hit = bool(wanted & keys) or any(w.startswith(t) for w in wanted for t in truncated)
        hit = hit or any(s.lower() in services for s in product.services)
        hit = hit or any(_bundle_match(path, b) for path in paths for b in product.bundle_ids
                         if "/" in path)
        if hit:
            found.append(product.name)
    return tuple(found)


def parse_products(raw: object, where: str = "edr_products") -> tuple[Product, ...]:
    """A product list from configuration JSON: [{"name": ..., "processes": [...], "services":
    [...], "bundle_ids": [...]}, ...]. ConfigError naming the bad field."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of products")
    products = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at}: expected an object")
        unknown_keys = sorted(set(item) - {"name", "processes", "services", "bundle_ids"})
        if unknown_keys:
            raise ConfigError(f"{at}.{unknown_keys[0]}: unknown field")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise ConfigError(f"{at}.name: expected a non-empty name of at most 64 characters")
        lists = {}
        for key in ("processes", "services", "bundle_ids"):
            value = item.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                      for v in value):
                raise ConfigError(f"{at}.{key}: expected a list of names")
            lists[key] = tuple(v.strip() for v in value)
        if not any(lists.values()):
            raise ConfigError(f"{at}: needs processes, services or bundle_ids")
        products.append(Product(name.strip(), lists["processes"], lists["services"],
                                lists["bundle_ids"]))
    return tuple(products)
