"""Small shared helpers that every layer may use: file hashing and atomic writes
(:mod:`.files`), where the package keeps its data (:mod:`.data_home`), checked numbers
(:mod:`.numbers`), the offline switch (:mod:`.offline`) and a style folder's file names
(:mod:`.style_files`).

May import: :mod:`portrait_stylize.errors`, :mod:`portrait_stylize.options` and the standard
library (plus ``huggingface_hub.constants`` for the data home); never torch.
"""
