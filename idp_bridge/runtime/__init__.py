"""I/O shells of idp_bridge: the directory client (python-ldap)."""
