"""The report, layered so that imports point one way: ``show`` (figures, tables, glued
values) at the bottom; ``series`` runs the notebooks (profiles, runner, parameters
cells); ``studies`` holds what a chapter computes and the rules that word its
findings; ``publish`` turns a run into the book, HTML pages and the README/card
blocks, and ``interactive`` is the try-the-model widget. Nothing outside imports it but
the CLI."""
