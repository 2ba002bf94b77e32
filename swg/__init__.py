"""swg: the secure web gateway — URL categories (urlcategories.py) and DLP detectors (dlp/) so far;
TLS inspection, malware scan and sanitising arrive with issue 7. Imports ztcore only."""
