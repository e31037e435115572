"""Turn summed batch statistics into per-sample metrics."""

from __future__ import annotations

import math


def psnr_db(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, peak]."""
    if mse <= 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def summarize_stats(totals: dict[str, float]) -> dict[str, float]:
    """Convert sums from ``LatentModel.batch_stats`` into metrics.

    ``psnr_db`` is computed from the mean squared error over all pixels of the
    set (not the mean of per-image PSNRs), so one number describes the set.
    """
    samples = totals.get("samples", 0.0)
    metrics: dict[str, float] = {}
    if samples > 0 and "loss" in totals:
        metrics["loss"] = totals["loss"] / samples
    if totals.get("pixels", 0.0) > 0:
        mse = totals["sse"] / totals["pixels"]
        metrics["mse"] = mse
        metrics["psnr_db"] = psnr_db(mse)
    if samples > 0 and "correct" in totals:
        metrics["accuracy"] = totals["correct"] / samples
    return metrics
