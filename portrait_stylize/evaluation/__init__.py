"""Scoring styles: the metrics (:mod:`.metrics`: SSIM, LPIPS, FID/KID, identity), their networks'
weights (:mod:`.metric_weights`) and the ``evaluate`` command's report (:mod:`.evaluate`).

A use case: may import every layer below the front ends (``pipeline``, ``batch``, ...).
"""
