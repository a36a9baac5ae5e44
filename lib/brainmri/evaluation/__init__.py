"""Scoring: the predictions files (``predictions``), metrics on top of scikit-learn
(``metrics``), the benchmark table (``benchmark``), explanations with Xplique
(``explain``) and the variance analysis (``variance``). Imports ``core``, ``data`` and
``modeling`` only."""
