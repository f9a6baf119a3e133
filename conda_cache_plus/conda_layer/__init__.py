"""The only code that imports conda: feature detection and the conda host, ``conda cache``'s
conda options, the doctor check, the plain reporter backend and the package extractor."""
