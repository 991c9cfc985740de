"""Where styles come from: the registry (:mod:`.registry`, ``checkpoints.json`` -> ``StyleSpec``),
the Hugging Face Hub (:mod:`.hub`), ModelScope (:mod:`.modelscope`), plain HTTP(S) downloads
(:mod:`.downloads`) and the cache of styles converted on first use (:mod:`.converted_cache`).

Network and files only, no networks run here. May import: ``errors``, ``options``, ``version``,
:mod:`portrait_stylize.common`.
"""
