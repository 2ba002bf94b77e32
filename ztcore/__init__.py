"""Sekimori's shared, pure core: what crosses packages.

Principal, Decision and its reasons, audit events, the tunnel's stream core, header names and
the error root live here. Nothing in ztcore imports another Sekimori package, and nothing here
opens a socket, reads a file or a clock: callers pass `now`.
"""
