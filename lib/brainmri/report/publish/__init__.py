"""What a run becomes for readers: the book (build, staging, Sphinx fixes), one chapter
as standalone HTML, and the generated blocks of README.md and the model card."""
