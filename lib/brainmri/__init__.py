"""brainmri: a reproducible report on brain MRI tumour classification.

The package holds every reusable line of the report; the notebooks under
``notebooks/`` only narrate and call it. Modules, one job each:

``datasets``   where the two Kaggle datasets live and how to fetch them
``images``     decoding any image file into pixels, or a reason why not
``inventory``  the list of files of a dataset, with what is wrong with the bad ones
``splits``     train / validation / test assignment
``preprocess`` resizing, caching and normalising pixels
``tfdata``     tf.data input pipelines and augmentation
``variance``   the report's variance analysis
``results``    the run folder and atomic writes
``plots``      figures shared by the notebooks
``pipeline``   running the notebook series with papermill
``book``       staging a run's notebooks and building the Jupyter Book
"""

__version__ = "0.1.0"

#: Canonical class names, in the order used for every probability column.
CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "no_tumor", "pituitary")
