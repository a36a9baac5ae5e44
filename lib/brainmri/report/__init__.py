"""The report: profiles (``profiles``), the papermill series runner (``runner``), what
a chapter calls (``notebook``, ``experiment``, ``claims``, ``tryout``), figures
(``figures``), each chapter's generated "What we found" (``findings``), the environment
record (``environment``), the book (``book``, ``sphinx_fixes``), one chapter as HTML
(``export``) and the numbers generated into the README, the model card and the book's
prose (``tables``). The top of the import graph: nothing imports it but the CLI."""
