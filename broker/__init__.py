"""Sekimori broker: tunnel server, decision pipeline, control plane, storage, audit."""
