"""Getting and reading data: where datasets live and how they are fetched (``sources``),
decoding files (``images``), the checked file list (``inventory``), the train/val/test
assignment (``splits``), one call from name to arrays (``dataset``), resized and
normalised pixels (``pixels``), tf.data pipelines (``inputs``) and duplicate images
(``duplicates``). Dataset folders are only ever read."""
