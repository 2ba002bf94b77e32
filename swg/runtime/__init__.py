"""swg I/O shells: list import (and, with issue 7, the inspection proxy and scanners)."""
