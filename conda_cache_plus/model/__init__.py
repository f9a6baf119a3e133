"""The model: what a package cache holds, as plain data (names, paths, records, specs, sizes,
clocks, settings) and the conda host protocol. Imports nothing above it."""
