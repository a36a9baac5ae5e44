"""The report, in the order a run goes through it: ``series`` runs the notebooks
(profiles, runner, environment), ``studies`` holds what a chapter computes, ``show`` how
results are shown (figures, findings, the README and model-card tables, the book) and
``interactive`` the try-the-model widget. The top of the import graph: nothing imports
it but the CLI."""
