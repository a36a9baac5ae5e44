"""brainmri: a reproducible report on brain MRI tumour classification.

Every reusable line of the report lives here; the notebooks under ``notebooks/`` only
narrate and call it. The subpackages are the stages of the work, and imports point one
way, from later stages to earlier ones::

    core        foundations every stage uses: errors, project paths, atomic files,
                the cache rule, the run folder's layout, progress bars
    data        getting and reading data: sources, images, inventory, splits, pixels,
                tf.data inputs, duplicates
    modeling    building, training, saving and running models
    evaluation  scoring what models predicted: predictions files, metrics, the
                benchmark, explanations, the variance analysis
    report      turning all of it into the report: profiles, the papermill runner, the
                model-chapter experiment, figures, the book, generated tables

``brainmri.cli`` is the one command line (``brainmri run|book|predict|data|...``).
"""

__version__ = "0.2.0"

#: Canonical class names, in the order used for every probability column.
CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "no_tumor", "pituitary")

#: Column names of probabilities and logits in every predictions file and CSV we write.
PROB_COLUMNS: list[str] = [f"p_{c}" for c in CLASS_NAMES]
LOGIT_COLUMNS: list[str] = [f"z_{c}" for c in CLASS_NAMES]
