"""Getting and reading data: where datasets live and how they are fetched (``sources``),
decoding files (``images``), the checked file list (``inventory``), the train/val/test
assignment (``splits``), one call from name to arrays (``dataset``), resized and
normalised pixels (``pixels``), tf.data pipelines (``inputs``), a chapter's training
recipe as pipelines (``recipes``), duplicate images
(``duplicates``) and images that are not brain MRI slices (``nonmri``, on which the
out-of-distribution warnings are measured). Dataset folders are only ever read."""
