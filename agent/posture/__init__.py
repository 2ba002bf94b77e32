"""Device posture collection: what the machine's OS says about its security, as PostureFacts.

`collect(os_family, runner, now, agent_version)` runs each OS's commands through a `Runner` and
combines the pure parsers in windows.py, macos.py and linux.py; products.py holds the EDR/AV
product list. Nothing here does I/O by itself: agent/runtime/posture_runner.py is the real
Runner (subprocesses and files) and `collect_here`. A fact that cannot be established is None
with a reason in `errors`, never a guess.
"""

from agent.posture.collect import RARELY_CHANGING, CommandResult, Runner, collect
from agent.posture.products import PRODUCTS, Product, parse_products, running_products

__all__ = ["PRODUCTS", "RARELY_CHANGING", "CommandResult", "Product", "Runner", "collect",
           "parse_products", "running_products"]
