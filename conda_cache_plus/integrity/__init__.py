"""Is an entry what its archive and metadata say? verify (two levels, remembered results) and
repair (re-extract, re-download, remove)."""
