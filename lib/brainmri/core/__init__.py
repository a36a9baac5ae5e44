"""Foundations every stage uses: errors, project paths, atomic files, the cache rule, the
run folder's layout and progress bars. Nothing here imports another brainmri stage."""
