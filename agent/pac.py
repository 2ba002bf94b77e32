"""The PAC file the agent serves at /proxy.pac (pure text generation).

Fail closed: the PAC names only the agent's proxy, with no `; DIRECT` fallback, so a browser
whose agent is down does not silently go direct. Loopback stays direct (it is the agent itself
and local development servers).
"""

from __future__ import annotations


def render_pac(proxy_host: str, proxy_port: int) -> str:
    host = f"[{proxy_host}]" if ":" in proxy_host else proxy_host  # an IPv6 proxy is bracketed
    return (
        "// Sekimori agent proxy auto-configuration\n"
        "function FindProxyForURL(url, host) {\n"
        '  if (host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host === "::1") {\n'
        '    return "DIRECT";\n'
        "  }\n"
        f'  return "PROXY {host}:{proxy_port}";\n'
        "}\n"
    )
