"""conda-cache-plus: the package-cache tooling conda never had."""

__version__ = "0.1.0"
