"""I/O shells shared by the agent and the broker (asyncio adapters around ztcore's cores)."""
