"""Every figure of the run quoted in README.md, the model card and the book's results,
conclusion and discussion chapters is generated from the run's files
(``brainmri tables``, ``brainmri.report.tables``): on a synthetic run the generated
sentences carry its numbers, and on the committed reference run the committed files
are exactly what regenerating them gives."""

import json
import re

import pandas as pd
import pytest
import yaml

from brainmri.core import paths
from brainmri.core.runfolder import RunFolder
from brainmri.report import tables

# --- a small synthetic run ------------------------------------------------------------------

SHIPPED = "compact_cnn+crop-union-bn"


def _metric(model, dataset, eval_set, n, acc, sens, ece=(0.1, 0.05), **extra):
    row = {"tag": f"{model}-{dataset}", "model": model, "dataset": dataset,
           "eval_set": eval_set, "seed": 42, "n": n, "accuracy": acc,
           "acc_ci_low": acc - 0.05 if acc == acc else acc,
           "acc_ci_high": acc + 0.04 if acc == acc else acc,
           "f1_macro": acc - 0.01, "f1_macro_ci_low": acc - 0.06, "f1_macro_ci_high": acc + 0.03,
           "tumour_sensitivity": sens, "sens_ci_low": sens - 0.03, "sens_ci_high": sens + 0.03,
           "tumour_specificity": 0.95, "missed_tumours": 7, "ece": ece[0],
           "ece_tempscaled": ece[1], "no_tumours": 30, "ood_flagged": 0.02}
    row.update(extra)
    return row


def _predictions(folder: RunFolder, model, dataset, labels, answers):
    path = folder.predictions(f"{model}-{dataset}", "test")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": model, "dataset": dataset, "split": "test", "eval_dataset": dataset,
                  "seed": 42, "path": [f"Testing/{i}.jpg" for i in range(len(labels))],
                  "label": labels, "prediction": answers}).to_csv(path, index=False)


def make_run(tmp_path, claims=False, seeds=False):
    """A run folder with every file the prose reads (figures chosen to be recognisable),
    and a project root holding the shipped model's sidecar."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    sidecar = {"model": "compact_cnn", "dataset": "nickparvar", "parameters": 123456,
               "temperature": 1.2345, "seed": 42,
               "ood": {"false_alarm_rate": 0.02, "n_val": 321},
               "training": {"variant": "crop-union-bn", "crop": "head",
                            "extra_training": "sartaj", "bn_reestimate": True, "epochs": 33,
                            "patience": 7},
               "exported_from": f"results/demo/models/{SHIPPED}-nickparvar"}
    (root / "models" / "brainmri_compact.json").write_text(json.dumps(sidecar))
    (root / "models" / "brainmri_compact.keras").write_bytes(b"x" * 2_500_000)
    folder = RunFolder(tmp_path / "results" / "demo").create()
    nan = float("nan")
    rows = [
        _metric("relu_cnn", "sartaj", "test", 200, 0.6543, 0.70, (0.111, 0.222)),
        _metric("relu_cnn", "sartaj", "test_dedup", 77, 0.3111, 0.5, no_tumours=0),
        _metric("relu_cnn_augmented", "sartaj", "test", 200, 0.4021, 0.4),
        _metric("relu_cnn_augmented", "sartaj", "test_dedup", 77, 0.2012, 0.3, no_tumours=0),
        _metric("sigmoid_cnn", "sartaj", "test", 200, 0.1850, 1.0, (0.101, 0.1012)),
        _metric("sigmoid_cnn", "sartaj", "test_dedup", 77, 0.3333, 1.0, no_tumours=0),
        _metric("compact_cnn", "sartaj", "test", 200, 0.6789, 0.77, (0.096, 0.186)),
        _metric("compact_cnn", "sartaj", "test_dedup", 77, 0.2987, 0.6, no_tumours=0),
        _metric("compact_cnn", "sartaj", "external", 400, 0.9111, 0.99, (0.106, 0.032)),
        _metric("compact_cnn", "sartaj", "external_br35h", 500, nan, 0.3456, (nan, nan)),
        _metric(SHIPPED, "nickparvar", "test", 600, 0.9765, 0.9912, (0.072, 0.012)),
        _metric(SHIPPED, "nickparvar", "test_dedup", 300, 0.9712, 0.995, (0.071, 0.013)),
        _metric(SHIPPED, "nickparvar", "external", 100, 0.4321, 0.78, (0.365, 0.486)),
        _metric(SHIPPED, "nickparvar", "external_br35h", 500, nan, 0.4567, (nan, nan)),
    ]
    pd.DataFrame(rows).to_csv(folder.metrics, index=False)
    labels = ["glioma"] * 10 + ["pituitary"] * 10
    _predictions(folder, "relu_cnn", "sartaj", labels, ["glioma"] * 2 + ["no_tumor"] * 8
                 + ["pituitary"] * 10)
    _predictions(folder, "compact_cnn", "sartaj", labels, ["glioma"] * 6 + ["no_tumor"] * 4
                 + ["pituitary"] * 10)
    _predictions(folder, "sigmoid_cnn", "sartaj", labels, ["pituitary"] * 20)
    variants = ["baseline", "baseline+bn", "crop-union", "crop-union+bn", "drop-br35h"]
    values = [(0.80, 0.90, 0.98, 0.20), (0.82, 0.91, 0.97, 0.30), (0.85, 0.92, 0.98, 0.25),
              (0.93, 0.94, 0.97, 0.3777), (0.70, 0.75, 0.6111, 0.3333)]
    if seeds:
        variants += ["crop-union-seed7", "crop-union-seed7+bn"]
        values += [(0.84, 0.9, 0.98, 0.24), (0.9111, 0.93, 0.97, 0.4222)]
    pd.DataFrame({
        "model": [f"compact_cnn+ablation-{v}" for v in variants],
        "val accuracy": [v[0] for v in values], "test accuracy": [v[1] for v in values],
        "dedup test accuracy": [v[1] for v in values],
        "test specificity": [v[2] for v in values], "dedup test specificity": 1.0,
        "external sensitivity": [v[3] for v in values],
        "external CI low": [v[3] - 0.03 for v in values],
        "external CI high": [v[3] + 0.03 for v in values], "external n": 500,
    }).to_csv(folder.ablation, index=False)
    if claims:
        pd.DataFrame({
            "setting": ["grayscale-6", "grayscale-16", "rgb-6", "rgb-16", "grayscale-6",
                        "grayscale-6"],
            "color_mode": ["grayscale", "grayscale", "rgb", "rgb", "grayscale", "grayscale"],
            "epochs": [6, 16, 6, 16, 6, 6], "seed": [42, 42, 42, 42, 7, 2026],
            "val accuracy": [0.9, 0.92, 0.91, 0.93, 0.89, 0.9],
            "test accuracy": [0.6012, 0.6534, 0.6245, 0.7012, 0.5876, 0.6123],
            "test CI low": [0.55, 0.60, 0.57, 0.65, 0.54, 0.56],
            "test CI high": [0.65, 0.70, 0.67, 0.75, 0.63, 0.66],
        }).to_csv(folder.root / "claims.csv", index=False)
    folder.sources.write_text(json.dumps({
        "nickparvar_class_by_source": {
            "train/no_tumor": {"br35h": 700, "figshare": 0, "sartaj": 600, "All": 1300},
            "train/glioma": {"br35h": 0, "figshare": 900, "sartaj": 100, "All": 1000}},
        "tumour_from_statistics": {"n": 2300, "accuracy": 0.9777, "majority_baseline": 0.6543},
        "shortcut_on_br35h": {"Br35H new tumour images": 500,
                              "Br35H new tumour images called no_tumor": 0.7123},
        "sartaj_test_gliomas_without_training_copy": 8}))
    folder.leakage.write_text(json.dumps({"datasets": {
        "sartaj": {"n_train": 1000, "n_test": 200, "test_images_with_copy_in_training": 123,
                   "share_of_test_with_copy_in_training": 0.615},
        "nickparvar": {"n_train": 2000, "n_test": 600, "test_images_with_copy_in_training": 299,
                       "share_of_test_with_copy_in_training": 0.4983}}}))
    folder.state.write_text(json.dumps({
        "04_inceptionv3": {"status": "skipped", "seconds": 5.0, "key": "a-lib1",
                           "reason": "skipped: ImageNet weights unavailable for inception_v3 "
                                     "(Exception: offline)."},
        "05_relu_cnn": {"status": "ok", "seconds": 1500.0, "key": "b-lib1"},
        "08b_compact_cnn-nickparvar": {"status": "ok", "seconds": 2100.0, "key": "c-lib1"},
        "08c_shortcut_ablation": {"status": "ok", "seconds": 3000.0, "key": "d-lib1"}}))
    folder.environment.write_text(json.dumps({"cpu_count": 3, "gpus": []}))
    folder.params.write_text(yaml.safe_dump({"steps": {
        "09_benchmark": {"n_bootstrap": 777, "seed": 5},
        "08c_shortcut_ablation": {"seed": 42, "settings": {"image_size": 64, "epochs": 9},
                                  "variants": [{"name": "baseline", "also_bn": True},
                                               {"name": "crop-union", "crop": "head",
                                                "extra_training": "sartaj", "also_bn": True},
                                               {"name": "drop-br35h", "drop_source": "br35h",
                                                "also_bn": True}]}}}))
    pd.DataFrame({"dataset": "sartaj", "split": ["train", "train", "val", "test", "test"],
                  "class": ["glioma", "no_tumor", "no_tumor", "glioma", "no_tumor"],
                  "n": [700, 200, 50, 150, 50]}).to_csv(folder.split_counts, index=False)
    pd.DataFrame({"model": ["relu_cnn-sartaj", f"{SHIPPED}-nickparvar"],
                  "explainer": ["GradCAM", "SmoothGrad"],
                  "flag_insensitive_to_weights": [False, False],
                  "mass_in_brain": [0.8123, 0.9345], "area_in_brain": [0.6123, 0.7012],
                  "mass_on_contour": [0.09, 0.05], "area_on_contour": [0.05, 0.05]}
                 ).to_csv(folder.xai, index=False)
    dup = folder.test_with_copy("sartaj")
    dup.parent.mkdir(exist_ok=True)
    pd.DataFrame({"test_path": ["Testing/0.jpg", "Testing/1.jpg"]}).to_csv(dup, index=False)
    pd.DataFrame({"br35h_path": ["y1.jpg", "y2.jpg", "y3.jpg", "y4.jpg"],
                  "sartaj_path": ["Testing/2.jpg", "Testing/3.jpg", "Testing/4.jpg", "Train/a.jpg"],
                  "sartaj_label": ["glioma", "glioma", "glioma", "glioma"],
                  "sartaj_split": ["test", "test", "test", "train"]}
                 ).to_csv(folder.overlap("br35h", "sartaj"), index=False)
    return tables.RunFiles.load(folder, root, name="demo"), root


def _all_blocks(r, raw: bool = False) -> dict[str, str]:
    """{file:block: generated text}, with line breaks read as spaces unless ``raw``."""
    return {f"{file}:{name}": text if raw else " ".join(text.split())
            for file, blocks in tables.BLOCKS.items()
            for name, generate, _ in blocks for text in [generate(r)]}


def test_generated_prose_carries_the_run_figures(tmp_path):
    r, _ = make_run(tmp_path)
    out = _all_blocks(r)
    readme, brief = out["README.md:run"], out["book/results.md:brief"]
    assert "3 CPU cores, no GPU" in readme and "1 h 50 min" in readme  # 6,605 s of steps
    assert "`08c_shortcut_ablation` (50 min)" in readme and "InceptionV3 was skipped" in readme
    assert "ImageNet weights unavailable" in brief and "report 000's InceptionV3" in brief
    assert "ranked first on validation accuracy (93.0 %)" in readme  # crop-union+bn
    assert "All its steps ran on the same version of the library code" in readme

    findings = out["book/results.md:findings"]
    assert "65.4 % (95 % CI 60.4-69.4) against the published 67 %, which lies inside" in findings
    assert "40.2 %" in findings and "which lies above our interval" in findings
    assert "collapses to one class as in the report, though to *pituitary*" in findings
    assert "2 of the 10 glioma test images" in findings  # from the predictions
    assert "67.9 % (95 % CI 62.9-71.9) against 65.4 %" in findings and "McNemar" in findings
    assert "(6 of 10, against 2)" in findings
    assert "97.7 % (95 % CI 92.7-101.6), 1.4 points below" in findings  # vs 0.9908
    assert "the 123 test images" in findings and "77 images remain, none of them" in findings
    assert "between 20.1 % and 33.3 %" in findings and "91.1 % of the 400" in findings
    assert "3 of the 200 test images (2 %)" in findings  # Sartaj test images in Br35H
    assert "34.6 %" in findings and "45.7 %" in findings and "less than half" in findings
    assert "finds more than 37.8 % (`crop-union+bn`)" in findings
    assert "0.072 to 0.012" in findings and "0.096 to 0.186" in findings
    assert "leaves that of the sigmoid CNN (0.101) unchanged" in findings

    answers = out["book/conclusion.md:answers"]
    assert answers.startswith("The committed demo run (3 CPU cores, no GPU, no ImageNet")
    assert "**Reproduction: yes for the ReLU and sigmoid CNNs, not for the augmented ReLU " \
           "CNN, not tested for the transfer models.**" in answers
    assert "(0.12 million weights" in answers and "nearly on Nickparvar" in answers
    assert "123 of Sartaj's 200 test images (62 %)" in answers
    assert "299 of its 1,311" not in answers and "299 of its 600 test images (50 %)" in answers
    assert "four levers in 5 variants" in answers  # crop, extra_training, drop_source, bn
    assert "lowers the shipped model's ECE at home (0.072 to 0.012) but raises it" in answers
    assert "81-93 % of their attribution" in answers and "61-70 % of the image" in answers
    assert "only Grad-CAM on the ReLU CNN leans" in answers and "1.80 times" in answers
    assert "Chapter 05b" not in answers  # no claims.csv in this run

    assert "(67 % to 71 % test accuracy" in out["book/discussion.md:compute"]  # published
    assert "3 CPU cores, no GPU (1 h 50 min" in out["book/discussion.md:compute"]
    assert "Each model is trained with one seed" in out["book/discussion.md:compute"]
    assert "50 of the 200 test images (25 %)" in out["book/discussion.md:shift"]
    assert "250 of the 950 training images (26 %)" in out["book/discussion.md:shift"]
    shortcut = out["book/discussion.md:shortcut"]
    assert "Br35H (700) and Sartaj (600)" in shortcut and "never from Br35H" in shortcut
    assert "97.8 %" in shortcut and "65.4 %" in shortcut and "most of them (71.2 %)" in shortcut
    assert "misses 54.3 %" in shortcut
    ablation = out["book/discussion.md:ablation"]
    assert "20.0 % (95 % CI 17.0-23.0)" in ablation and "the best 37.8 %" in ablation
    assert "All 4 other variants find more" in ablation
    assert "(`drop-br35h`) raises Br35H sensitivity to 33.3 % but lowers home specificity " \
           "to 61.1 %, 36.9 points below" in ablation
    gliomas = out["book/discussion.md:gliomas"]
    assert "Of the 8 without" in gliomas and "the three models find" in gliomas
    assert "3 of them (38 %) have a copy in Br35H" in gliomas and "so that most" not in gliomas

    assert "123,456 weights in a 2.5 MB file" in out["models/README.md:model"]
    assert "1.234 (above 1: the raw model was over-confident" in out["models/README.md:model"]
    assert "took 35 min on 3 CPU cores" in out["models/README.md:training"]
    assert "at most 33 epochs" in out["models/README.md:training"]
    note = out["models/README.md:metrics-note"]
    assert "2 % of the 321 clean" in note and "(777 resamples, seed 5)" in note
    assert "(64 px, 9 epochs)" in out["models/README.md:ablation-note"]
    assert "`crop-union+bn` ranks first there (93.0 %)" in out["models/README.md:ablation-note"]
    failures = out["models/README.md:failures"]
    assert "mostly missed" in failures and "45.7 % (95 % CI 42.7-48.7)" in failures
    assert "299 of Nickparvar's 600 test images (50 %)" in failures and "97.1 %" in failures

    assert "| ReLU CNN, fine-tuned, grey | 16 | ≈ 0.71 |" in out["book/results.md:published-000"]
    assert "| Sigmoid CNN | 6 | 0.25 | 0.06 | 0.25 | 0.10 | 294 | 0.41 |" in \
        out["book/results.md:published-000"]
    assert "0.99997" in out["book/results.md:published-001"]


def test_seed_repeats_and_claims_are_read_when_the_run_has_them(tmp_path):
    r, _ = make_run(tmp_path, claims=True, seeds=True)
    out = _all_blocks(r)
    compute = out["book/discussion.md:compute"]
    assert "Chapter 05b retrains the ReLU CNN (grey, 6 epochs) with three seeds" in compute
    assert "from 58.8 % to 61.2 %" in compute
    assert "chapter 08c retrains its variant `crop-union+bn` with two seeds" in compute
    assert "from 37.8 % to 42.2 %" in compute and "The other models" in compute
    assert "`crop-union` with" not in compute  # only the shipped recipe's repeats
    answers = out["book/conclusion.md:answers"]
    assert "grey after 16 epochs 65.3 % (95 % CI 60.0-70.0; the report's 71 % lies " \
           "above)" in answers
    assert "RGB after 16 epochs 70.1 % (95 % CI 65.0-75.0; the report's 74 % lies " \
           "inside)" in answers
    # the seed repeats do not count as variants, nor as the best or the chosen one
    assert "`crop-union+bn` ranks first there (93.0 %)" in out["models/README.md:ablation-note"]
    assert "5 variants" in answers
    assert "two seeds" in out["book/discussion.md:ablation"]


def test_a_run_without_the_optional_files_still_renders(tmp_path):
    r, root = make_run(tmp_path)
    for path in (r.folder.ablation, r.folder.sources, r.folder.xai, r.folder.split_counts,
                 r.folder.leakage, r.folder.params):
        path.unlink()
    r = tables.RunFiles.load(r.folder, root, name="demo")
    out = _all_blocks(r)
    assert out["book/discussion.md:ablation"] == "" and out["book/discussion.md:shift"] == ""
    assert "Explanations" not in out["book/conclusion.md:answers"]
    assert "ranked first" not in out["README.md:run"]


def test_blocks_are_replaced_in_place_and_wrapped_safely(tmp_path):
    r, _ = make_run(tmp_path)
    blocks = tables.BLOCKS["book/conclusion.md"]
    doc = ("# Conclusion\n\nintro\n\n<!-- answers:start -->\nold 0.632\n<!-- answers:end -->"
           "\n\nend\n")
    once = tables.render_text(doc, blocks, r)
    assert "old 0.632" not in once and once.startswith("# Conclusion\n\nintro\n\n")
    assert once.endswith("<!-- answers:end -->\n\nend\n")
    assert "from results/demo/ (metrics.csv" in once and "published.py" in once
    assert tables.render_text(once, blocks, r) == once  # regenerating changes nothing
    for text in _all_blocks(r, raw=True).values():
        for line in text.splitlines()[1:]:
            if line.startswith("|"):
                continue
            body = line.lstrip()
            assert not re.match(r"(%|>|#+ |[-+*] (?!\*\*)|\d+\. (?!\*\*))", body) or \
                line.startswith(("- **", "1. **", "2. **", "3. **", "4. **")), line


# --- the committed files match the committed run ---------------------------------------------


def test_committed_files_match_the_reference_run():
    """README.md, the model card and the book's results, conclusion and discussion hold
    exactly what ``brainmri tables --run reference`` generates from results/reference/:
    rerun it after regenerating the run."""
    root = paths.project_root()
    folder = RunFolder(root / "results" / "reference")
    if not folder.metrics.exists():
        pytest.skip("no committed reference run")
    for rel, blocks in tables.BLOCKS.items():
        text = (root / rel).read_text()
        for name, _, _ in blocks:
            assert f"<!-- {name}:start -->" in text and f"<!-- {name}:end -->" in text, \
                f"{rel} lost its generated block {name}"
    rendered = tables.render_all("reference", folder=folder, root=root)
    assert {p.relative_to(root).as_posix() for p in rendered} == set(tables.BLOCKS)
    stale = [str(p.relative_to(root)) for p, text in rendered.items() if p.read_text() != text]
    assert not stale, f"{stale} differ from results/reference/: run " \
                      "`brainmri tables --run reference`"
