"""Content inspection cores: what a complete body holds and what may pass.

`extract` takes a body (with its file name and Content-Type) apart into scannable parts within
the `limits`; `verdict` runs DLP and the built-in malware signatures over those parts and says
allowed or blocked with a reason; `sanitise` removes active content (VBA, ActiveX, PDF actions)
from a file. Pure: bytes in, values out. The proxy shell buffers bodies and acts on verdicts.
"""
