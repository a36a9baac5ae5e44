"""Figures published by the two reports we reproduce, for side-by-side comparison only.

Report 000 (Sartaj test set, 394 images): tables 6.1-6.4 and 7.1, sections 4.2, 4.4 and
10.2, and the summary closing chapter 7.
Report 001 (Nickparvar test set, 1,311 images): results section.
Nothing in the pipeline is computed from these numbers.
"""

from __future__ import annotations

from brainmri.modeling import builders

#: The dataset each report trained and tested on.
REPORT_000_DATASET = "sartaj"
REPORT_001_DATASET = "nickparvar"

#: Report 000's test images per class (section 4.2): the supports of its per-class rows.
REPORT_000_TEST_SUPPORT = {"glioma": 100, "meningioma": 115, "no_tumor": 105,
                           "pituitary": 74}

REPORT_000 = {
    "inception_v3": {"accuracy": 0.71, "loss": 1.41, "precision_w": 0.74, "recall_w": 0.71,
                     "f1_report": 0.68, "fp": 123, "fn": 123, "epochs": 15,
                     "recall": {"glioma": 0.50, "meningioma": 0.50, "no_tumor": 0.89,
                                "pituitary": 0.90}},
    "relu_cnn": {"accuracy": 0.67, "loss": 4.16, "precision_w": 0.72, "recall_w": 0.67,
                 "f1_report": 0.62, "fp": 130, "fn": 130, "auc_w": 0.84, "epochs": 6,
                 "recall": {"glioma": 0.17, "meningioma": 0.88, "no_tumor": 0.96,
                            "pituitary": 0.61},
                 # table 6.2's per-class rows; the summary closing chapter 7 gives F1 0.63
                 "precision": {"glioma": 0.81, "meningioma": 0.68, "no_tumor": 0.58,
                               "pituitary": 0.88},
                 "f1": {"glioma": 0.28, "meningioma": 0.77, "no_tumor": 0.73,
                        "pituitary": 0.72},
                 "f1_summary": 0.63},
    "relu_cnn_augmented": {"accuracy": 0.66, "loss": 4.79, "precision_w": 0.71,
                           "recall_w": 0.66, "f1_report": 0.62, "fp": 132, "fn": 132,
                           "auc_w": 0.81, "epochs": 6,
                           "recall": {"glioma": 0.17, "meningioma": 0.84, "no_tumor": 0.92,
                                      "pituitary": 0.69},
                           # table 6.3's per-class rows
                           "precision": {"glioma": 0.77, "meningioma": 0.69,
                                         "no_tumor": 0.56, "pituitary": 0.88},
                           "f1": {"glioma": 0.28, "meningioma": 0.76, "no_tumor": 0.70,
                                  "pituitary": 0.77}},
    "sigmoid_cnn": {"accuracy": 0.25, "loss": 1.43, "precision_w": 0.06, "recall_w": 0.25,
                    "f1_report": 0.10, "fp": 294, "fn": 294, "auc_w": 0.41, "epochs": 6,
                    "recall": {"glioma": 1.00, "meningioma": 0.0, "no_tumor": 0.0,
                               "pituitary": 0.0}},
    # Section 10.2: the ReLU CNN fine-tuned to 16 epochs, grayscale vs RGB input.
    "relu_cnn_16_epochs_grayscale": {"accuracy": 0.71, "epochs": 16},  # 6 + 10 more
    "relu_cnn_rgb": {"accuracy": 0.74},
}

REPORT_001 = {
    "convnext_tiny": {"accuracy": 0.9908, "precision_w": 0.9909, "recall_w": 0.9908,
                      "f1_w": 0.9908,
                      "auc": {"glioma": 0.9998, "meningioma": 0.9993, "pituitary": 0.9994,
                              "no_tumor": 0.99997}},
}


#: Report 000's variance analysis (section 4.4), RGB 256 px training images.
VARIANCE_000 = {
    "intra": {"glioma": 178_346_470.0735555, "meningioma": 330_496_060.5393776,
              "pituitary": 231_571_516.7505451, "no_tumor": 484_557_952.5108772},
    "inter": 50_487_799_049.60,
    "R_report": 41.22,
}


#: What our own models are compared with: the best published model on the same test set.
BEST_PUBLISHED = {REPORT_000_DATASET: "relu_cnn_rgb", REPORT_001_DATASET: "convnext_tiny"}
#: Every model's name as a reader sees it: ours, and report 000's section 10.2 models.
DISPLAY = {**builders.DISPLAY, "relu_cnn_rgb": "RGB CNN",
           "relu_cnn_16_epochs_grayscale": "grey CNN after 16 epochs"}


def reported(model_name: str, dataset: str) -> dict | None:
    """The published figures for ``model_name`` on ``dataset``, if a report has them."""
    table = REPORT_000 if dataset == REPORT_000_DATASET else REPORT_001
    return table.get(model_name)
