"""How results are shown: figures, each chapter's findings, the README and model-card
tables, the book build, one chapter as HTML. A new figure or finding goes here."""
