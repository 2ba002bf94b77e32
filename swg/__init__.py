"""swg: placeholder package; its engines arrive with their issues. Imports ztcore only."""
