"""The whole quick profile through papermill, checked on the values it produced."""

import json

import nbformat
import pandas as pd
import pytest

from conftest import file_digests

pytestmark = pytest.mark.slow


def test_series_ran_and_notebooks_hold_no_errors(quick_run):
    run_dir = quick_run["run_dir"]
    executed = sorted((run_dir / "notebooks").glob("*.ipynb"))
    assert len(executed) >= 3
    for path in executed:
        nb = nbformat.read(path, 4)
        errors = [o for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: {errors[0]['ename']}"
    state = json.loads((run_dir / "state.json").read_text())
    assert all(v["status"] == "ok" for v in state.values())
    print(f"quick profile wall time: {quick_run['seconds']:.0f} s")


def test_results_files_hold_real_values(quick_run):
    run_dir = quick_run["run_dir"]
    counts = pd.read_csv(run_dir / "split_counts.csv")
    assert list(counts.columns[:4]) == ["dataset", "split", "class", "n"]
    assert set(counts["dataset"]) == {"sartaj", "nickparvar", "br35h"}
    sartaj = counts[counts["dataset"] == "sartaj"].set_index(["split", "class"])["n"]
    train = sartaj[("train", "glioma")]
    assert train > 0 and sartaj[("val", "glioma")] == int((train + sartaj[("val", "glioma")])
                                                          * 0.2)
    br35h = counts[counts["dataset"] == "br35h"]
    assert set(br35h["split"]) == {"test"} and set(br35h["class"]) == {"tumour", "no_tumor"}
    sources = json.loads((run_dir / "sources.json").read_text())  # chapter 01c
    assert sum(sources["br35h_external"].values()) > 0
    ablation = pd.read_csv(run_dir / "ablation.csv")  # chapter 08c
    assert len(ablation) >= 3 and ablation["val accuracy"].between(0, 1).all()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    external = metrics[metrics["eval_set"] == "external_br35h"]
    assert len(external) and external["tumour_sensitivity"].between(0, 1).all()
    variance = json.loads((run_dir / "variance.json").read_text())
    assert variance["inter"] > 0 and all(v > 0 for v in variance["intra"].values())
    assert 0 < variance["explained_share"] < 1
    assert variance["R_report"] == pytest.approx(
        variance["inter"] / sum(variance["intra"].values()))
    skipped = pd.read_csv(run_dir / "skipped.csv")
    assert list(skipped.columns)[:2] == ["dataset", "path"]
    env = json.loads((run_dir / "environment.json").read_text())
    assert set(env["datasets"]) >= {"sartaj"}
    assert all(len(d["fingerprint"]) == 16 for d in env["datasets"].values())
    assert all(isinstance(s, (int, float)) for s in env["wall_time_s"].values())


def _json_text_without_images(path):
    """The notebook's JSON text with base64 images blanked: a PNG's bytes may spell
    "/tmp/" by chance, and they name no path."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime in data:
                if mime.startswith("image/") and mime != "image/svg+xml":
                    data[mime] = ""
    return json.dumps(nb, ensure_ascii=False)


def test_executed_notebooks_name_no_machine_path_and_hide_plumbing(quick_run):
    from brainmri.core import paths

    root, data = paths.project_root(), quick_run["data_root"]
    machine = {str(root), str(root.resolve()), str(data), str(data.resolve()), "/tmp/", "/home/"}
    executed = sorted((quick_run["run_dir"] / "notebooks").glob("*.ipynb"))
    assert executed
    for path in executed:
        text = _json_text_without_images(path)
        found = sorted(m for m in machine if m in text)
        assert not found, f"{path.name} contains {found}"
        nb = nbformat.read(path, 4)
        for tag in ("injected-parameters", "parameters"):
            cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
            assert len(cells) == 1, f"{path.name}: {len(cells)} {tag} cells"
            assert "remove-cell" in cells[0].metadata.tags, f"{path.name}: {tag} shown"
        assert nb.metadata.papermill.input_path.startswith("notebooks/"), path.name


def test_raw_data_is_byte_identical_after_the_run(quick_run):
    for name, before in quick_run["digests_before"].items():
        assert file_digests(quick_run["data_root"] / name) == before, name


def test_book_builds_with_every_toc_page(built_book):
    from brainmri.report.publish.book import toc_notebooks

    assert (built_book / "index.html").exists()
    for stem in toc_notebooks():
        assert (built_book / "book" / "notebooks" / f"{stem}.html").exists(), stem


def test_book_pages_hide_parameters_and_name_no_machine_path(built_book, quick_run):
    from brainmri.core import paths

    machine = {str(paths.project_root()), str(quick_run["data_root"]), "/tmp/"}
    for page in sorted((built_book / "book" / "notebooks").glob("*.html")):
        html = page.read_text()
        # myst-nb marks each cell shown with its tags as classes (tag_parameters)
        assert "tag_injected-parameters" not in html and "tag_parameters" not in html, \
            page.name
        found = sorted(m for m in machine if m in html)
        assert not found, f"{page.name} contains {found}"


# --- each chapter's key output, read back (a chapter that runs but computes nothing fails) --

def _step_params(run_dir, step: str) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "params.yaml").read_text())["steps"][step]


def _printed(run_dir, step: str) -> str:
    """Everything the executed notebook of ``step`` printed or displayed as text or HTML."""
    nb = nbformat.read(run_dir / "notebooks" / f"{step}.ipynb", 4)
    return "\n".join(str(o.get("text") or o.get("data", {}).get("text/html")
                         or o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells for o in c.get("outputs", []))


def _glued(run_dir, step: str) -> dict[str, str]:
    """The values a chapter glued (myst-nb's glue outputs), by key."""
    nb = nbformat.read(run_dir / "notebooks" / f"{step}.ipynb", 4)
    return {o["metadata"]["scrapbook"]["name"]:
            o["data"]["application/papermill.record/text/plain"]
            for c in nb.cells for o in c.get("outputs", [])
            if "scrapbook" in o.get("metadata", {})}


GLUED_CHAPTERS = ["01_data_exploration", "01b_leakage_audit", "01c_source_audit",
                  "02_variance_analysis", "03_preprocessing", "05_relu_cnn",
                  "05b_relu_cnn_claims", "06_relu_cnn_augmented", "07_sigmoid_cnn",
                  "08b_compact_cnn", "08b_compact_cnn-nickparvar", "08c_shortcut_ablation",
                  "09_benchmark"]


@pytest.mark.parametrize("step", GLUED_CHAPTERS)
def test_chapter_pastes_only_glued_keys_and_shows_no_log_or_repr(quick_run, step):
    """Every key a chapter's markdown pastes was glued; nothing reaches stdout, and no
    training log reaches the executed chapter at all (a batch run trains silently: the
    model folder's history.csv is the log); no bare repr is displayed."""
    import re

    nb = nbformat.read(quick_run["run_dir"] / "notebooks" / f"{step}.ipynb", 4)
    pasted = {k for c in nb.cells if c.cell_type == "markdown"
              for k in re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", c.source)}
    assert pasted and pasted <= set(_glued(quick_run["run_dir"], step))
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert not (o.get("output_type") == "stream" and o.get("name") == "stdout"), \
                f"{step}: {o.get('text', '')[:80]!r}"
            assert not re.search(r"Epoch \d+/\d+|\d+/\d+ - \d+m?s|Restoring model weights",
                                 o.get("text", "")), f"{step}: {o.get('text', '')[:80]!r}"
            data = o.get("data", {})
            if o.get("output_type") in ("execute_result", "display_data") \
                    and "scrapbook" not in o.get("metadata", {}):
                assert {"text/html", "image/png"} & set(data), f"{step}: {data}"


def test_model_chapters_glue_their_verdicts(quick_run):
    run_dir = quick_run["run_dir"]
    assert _glued(run_dir, "07_sigmoid_cnn")["sigmoid_verdict"].split(":")[0] in {
        "reproduced", "reproduced in kind only", "not reproduced"}
    claims = _glued(run_dir, "05b_relu_cnn_claims")
    assert {claims["epochs_verdict"], claims["rgb_verdict"]} <= {
        "supported", "not shown", "contradicted"}
    assert _glued(run_dir, "01c_source_audit")["label_noise_verdict"]
    ablation = _glued(run_dir, "08c_shortcut_ablation")
    assert ablation["yardstick"].endswith("points") and "/" in ablation["chosen_dedup_spec"]


def test_the_ablation_chapter_shows_its_adabn_table(quick_run):
    """The deployment-mode table is the cell's output, not hidden behind a later call."""
    from brainmri.core.runfolder import RunFolder

    run_dir = quick_run["run_dir"]
    adabn = pd.read_csv(RunFolder(run_dir).adabn)
    nb = nbformat.read(run_dir / "notebooks" / "08c_shortcut_ablation.ipynb", 4)
    html = "".join("".join(o.get("data", {}).get("text/html", ""))
                   for c in nb.cells for o in c.get("outputs", []))
    assert len(adabn) > 0 and "AdaBN on Br35H" in html


def test_benchmark_explanations_and_tryout_glue_what_the_prose_pastes(quick_run):
    """Chapters 09-11 glue the values the book's pages paste: ranges without the models
    that give a constant answer, rates as counts, one word chosen by a rule."""
    import re

    from brainmri.report.studies import summary

    run_dir = quick_run["run_dir"]
    bench = _glued(run_dir, "09_benchmark")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    for model in set(metrics.loc[metrics["degenerate"].astype(bool), "model"]):
        assert f"({summary.label(model)}," not in bench["br35h_range"]
        assert summary.label(model) in bench["degenerate_models"]
    assert bench["shipped_thr_word"] in {"more", "fewer", "as many"}
    assert re.fullmatch(r"[\d,]+", bench["shipped_missed_thr"])
    assert re.match(r"[\d,]+/[\d,]+ \(", bench["shipped_home_specificity"])
    assert bench["run_name"] == run_dir.name
    xai = pd.read_csv(run_dir / "xai_faithfulness.csv")
    explained = _glued(run_dir, "10_explainability")
    assert explained["xai_n_pairs"] == str(len(xai))
    # a model with one answer for every image is explained but enters no count of maps
    constant = set(metrics.loc[metrics["degenerate"].astype(bool)
                               & (metrics["eval_set"] == "test"), "tag"])
    informative = xai[~xai["model"].isin(constant)]
    assert explained["xai_outline"].endswith(f"of {len(informative)}")
    assert _glued(run_dir, "11_try_the_model")["example_answer"]


def test_preprocessing_recipes_agree_and_arrays_have_the_asked_shape(quick_run):
    import re

    run_dir = quick_run["run_dir"]
    params, text = _step_params(run_dir, "03_preprocessing"), _printed(run_dir, "03_preprocessing")
    difference = float(_glued(run_dir, "03_preprocessing")["largest_difference"])
    assert difference < 1e-4  # unit-then-standardise equals standardise in one step
    channels = 1 if params["color_mode"] == "grayscale" else 3
    size = params["image_size"]
    shapes = re.findall(rf">{size} x {size} x {channels}<", text)
    assert len(shapes) >= 4  # three splits and a batch


def test_claims_table_has_every_setting_and_seed_with_intervals(quick_run):
    run_dir = quick_run["run_dir"]
    params = _step_params(run_dir, "05b_relu_cnn_claims")
    claims = pd.read_csv(run_dir / "claims.csv")
    expected = (len(params["color_modes"]) * len(params["epoch_counts"])
                + len(params["seeds"]) - 1)  # the first seed's models are the grid's
    assert len(claims) == expected and claims["model"].is_unique
    assert set(claims["color_mode"]) == set(params["color_modes"])
    assert set(claims["epochs"]) == set(params["epoch_counts"])
    assert set(claims["seed"]) == set(params["seeds"])
    accuracy = claims[["val accuracy", "test accuracy", "test CI low", "test CI high"]]
    assert accuracy.stack().between(0, 1).all()
    assert (claims["test CI low"] <= claims["test accuracy"]).all()
    assert (claims["test accuracy"] <= claims["test CI high"]).all()


def test_sigmoid_chapter_measures_gradient_norms_of_both_networks(quick_run):
    """Chapter 07's table: one positive, finite gradient norm per layer and network."""
    import math
    import re

    text = _printed(quick_run["run_dir"], "07_sigmoid_cnn")
    table = next(t for t in text.split("</table>") if "sigmoid, trained" in t)
    assert "ReLU, trained" in table and "sigmoid, initial" in table
    row = re.search(r">conv1<(.*?)</tr>", table, re.S).group(1)
    values = [float(v) for v in re.findall(r">([-+.\de]+)<", row)][:4]
    assert len(values) == 4 and all(math.isfinite(v) and v > 0 for v in values)


def test_explainability_scores_every_explained_model_and_explainer(quick_run):
    run_dir = quick_run["run_dir"]
    params = _step_params(run_dir, "10_explainability")
    xai = pd.read_csv(run_dir / "xai_faithfulness.csv")
    models = {tag.rsplit("-", 1)[0].split("+", 1)[0] for tag in xai["model"]}
    assert models == set(params["models"])
    assert (xai.groupby("model")["explainer"].nunique() == 4).all()
    assert (xai["n_images"] == params["faithfulness_samples"]).all()
    assert (xai["n_sanity"] == params["sanity_samples"]).all()
    assert xai[["deletion", "insertion", "mass_in_brain", "mass_on_contour"]].stack() \
        .between(0, 1).all()
    assert xai[["mufidelity", "randomisation_similarity"]].stack().between(-1, 1).all()
