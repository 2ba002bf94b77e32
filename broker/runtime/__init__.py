"""I/O shells of the broker: tunnel server, upstream relay, store, audit sink."""
