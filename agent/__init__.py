"""Sekimori agent: local proxy, PAC, tunnel client. Imports ztcore only: it ships alone to laptops."""
