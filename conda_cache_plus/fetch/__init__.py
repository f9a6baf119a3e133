"""Filling a cache: package references (@EXPLICIT, URLs, repodata), the plan, the download and
extract pipeline, and exporting a cache as a channel."""
