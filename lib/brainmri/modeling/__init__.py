"""Models: builders (``builders``), devices and determinism (``devices``), the one training
path (``training``), saved models and their sidecars (``saved``), classifying files
(``inference``), out-of-distribution warnings and their calibration (``ood``), training
throughput (``throughput``) and learning diagnostics (``diagnostics``). Imports ``core``
and ``data`` only."""
