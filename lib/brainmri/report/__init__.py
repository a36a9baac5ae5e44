"""The report: profiles (``profiles``), the papermill series runner (``runner``), what
a chapter calls (``notebook``, ``experiment``), figures (``figures``), the published
figures we compare with (``published``), the environment record (``environment``), the
book (``book``, ``sphinx_fixes``) and the tables generated into README and model card
(``tables``). The top of the import graph: nothing imports it but the CLI."""
