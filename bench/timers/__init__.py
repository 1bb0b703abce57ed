"""Timing a step on a device, and the interval of the median of such times: what ``bench latency`` and
``bench profile`` share.

Both time a step repeatedly and report a median with its confidence interval -- latency a forward pass,
:mod:`bench.train.profile` and its ``--engines``/``--peers`` comparisons a training step. The timers live here,
below both, so that ``latency`` and ``train`` are peers and neither imports the other:

* :mod:`bench.timers.backends`: the CUDA and CPU timers, with synchronisation, peak memory and the device's
  out-of-memory error (torch);
* :mod:`bench.timers.median`: the distribution-free 95% interval of a median (numpy only, so latency records
  are read and re-rendered without torch).
"""
