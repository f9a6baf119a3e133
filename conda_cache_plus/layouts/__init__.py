"""Cache layouts behind one protocol (:mod:`.kinds`): conda's flat and mamba's nested layout
(:mod:`.conda_pkgs`), rattler's and pixi's (:mod:`.rattler_cache`), detection, the remembered
scan index, and the set of caches a verb works on."""
