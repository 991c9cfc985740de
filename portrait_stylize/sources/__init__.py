"""Where styles come from: the registry (:mod:`.registry`, ``checkpoints.json`` -> ``StyleSpec``),
the Hugging Face Hub (:mod:`.hub`), ModelScope (:mod:`.modelscope`), files of GitHub repositories
pinned by commit (:mod:`.github`) and the cache of styles converted on first use
(:mod:`.converted_cache`); plain HTTP(S) downloads are :mod:`portrait_stylize.common.downloads`.

Network and files only, no networks run here. May import: ``errors``, ``options``, ``version``,
:mod:`portrait_stylize.common`.
"""
