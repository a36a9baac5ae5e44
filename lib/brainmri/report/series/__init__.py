"""Running the series: profiles and parameters, the papermill runner, what every chapter
calls first (``notebook``) and the environment record."""
