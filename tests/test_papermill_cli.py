"""The chapters driven with papermill's own command line (issue 37): each parameter is a
variable of the parameters cell that ``--help-notebook`` lists with base.yaml's default,
``-p`` sets it, and a name or value ``brainmri run --set`` would refuse fails the chapter's
first cell with one message."""

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from brainmri.core import paths
from brainmri.core.errors import ProfileError
from brainmri.report.series import cells, notebook, profiles

PAPERMILL = str(Path(sys.executable).parent / "papermill")
CHAPTER = "02_variance_analysis"


def _chapters():
    base = profiles.load_profile("base")
    return [p for p in sorted(paths.notebooks_dir().glob("*.ipynb")) if p.stem in base.chapters]


def test_help_notebook_lists_every_parameter_with_its_base_yaml_default():
    base = profiles.load_profile("base")
    notebooks = _chapters()
    assert {p.stem for p in notebooks} == set(base.chapters)
    for path in notebooks:
        listed = papermill.inspect_notebook(str(path))
        declared = base.declared(path.stem)
        assert list(listed) == [*_cell_order(path.stem, base), "run_dir"], path.name
        for name, value in declared.items():
            default = ast.literal_eval(listed[name]["default"])
            assert default == value and type(default) is type(value), (path.name, name)
            assert listed[name]["help"], (path.name, name)
            # the type papermill shows is the rule's (base.yaml's `rules`)
            assert listed[name]["inferred_type_name"] == cells.type_name(base.rule(name)), \
                (path.name, name)
        assert listed["run_dir"]["default"] == "None"


def _cell_order(chapter, base):
    own = base.chapters[chapter].get("params") or {}
    shared = [n for g in base.chapters[chapter].get("shared", []) for n in base.shared[g]
              if n not in own]
    return [*shared, *own]


def test_help_notebook_command_line():
    done = subprocess.run([PAPERMILL, "--help-notebook", str(paths.notebooks_dir()
                                                             / "05_relu_cnn.ipynb")],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "epochs: int (default 6)" in done.stdout
    assert "Unknown type" not in done.stdout
    assert "early stopping on validation loss" in done.stdout
    assert "params:" not in done.stdout


def test_parameters_cells_are_what_base_yaml_generates():
    """`make params-cells` has nothing to write: no notebook disagrees with base.yaml."""
    assert cells.stale() == []


def test_a_changed_default_makes_the_cell_stale(tmp_path, monkeypatch):
    import nbformat
    import yaml

    params_dir = tmp_path / "params"
    params_dir.mkdir()
    text = (paths.params_dir() / "base.yaml").read_text()
    assert text.count("variance_image_size: 256") == 1
    (params_dir / "base.yaml").write_text(text.replace("variance_image_size: 256",
                                                       "variance_image_size: 128"))
    monkeypatch.setenv("BRAIN_MRI_PARAMS", str(params_dir))
    copy = tmp_path / f"{CHAPTER}.ipynb"
    copy.write_bytes((paths.notebooks_dir() / f"{CHAPTER}.ipynb").read_bytes())
    assert cells.stale([copy]) == [copy.name]
    ids = [c.id for c in nbformat.read(copy, 4).cells]
    assert cells.write([copy]) == [copy.name] and cells.stale([copy]) == []
    nb = nbformat.read(copy, 4)
    assert [c.id for c in nb.cells] == ids
    assert "variance_image_size = 128  #" in cells.parameters_cell(nb).source
    assert yaml.safe_load((params_dir / "base.yaml").read_text())["chapters"][CHAPTER][
        "params"]["variance_image_size"] == 128


def test_yaml_comments_join_continued_lines():
    text = ("a:\n  b: 1  # first line\n        # second line\n  # about c\n  c: 2\n")
    assert cells.yaml_comments(text) == {("a",): "", ("a", "b"): "first line second line",
                                         ("a", "c"): ""}


# --- the values a papermill user gives ------------------------------------------------------

def _namespace(**injected):
    """A notebook's globals after the parameters cell and papermill's injected cell."""
    base = profiles.load_profile("base").declared(CHAPTER)
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items())
    return {**base, "run_dir": None, **injected,
            "In": ["", "seed = 42\nrun_dir = None", source, "params, run_dir = ..."]}


def test_from_globals_reads_papermill_values_as_set_does():
    params, run_dir = notebook.from_globals(
        CHAPTER, _namespace(subset="5", data_dir=2024, run_dir="/tmp/x",
                            variance_split="val"))
    assert params["subset"] == 5 and params["data_dir"] == "2024"
    assert params["variance_split"] == "val" and run_dir == "/tmp/x"
    assert params["variance_image_size"] == 256  # the default where none is given
    params, _ = notebook.from_globals("01_data_exploration", {
        **profiles.load_profile("base").declared("01_data_exploration"),
        "datasets": "[sartaj, br35h]"})
    assert params["datasets"] == ["sartaj", "br35h"]


@pytest.mark.parametrize("given,match", [
    ({"sbuset": 5}, r"sbuset: not a parameter of this chapter \(papermill --help-notebook"),
    ({"subset": 0}, r"subset=0: must lie in \[1, inf\] \(default None\)"),
    ({"variance_image_size": 32.5}, "variance_image_size=32.5: expected int"),
    ({"val_fraction": math.nan}, "val_fraction=nan: not a finite number"),
    ({"dataset": None}, "dataset=None: null is not accepted"),
    ({"variance_color_mode": "blue"}, "allowed values are grayscale, rgb"),
    ({"run_dir": ["a"]}, r"run_dir=\['a'\]: expected a folder"),
])
def test_from_globals_refuses_what_set_refuses(given, match):
    with pytest.raises(ProfileError, match=match):
        notebook.from_globals(CHAPTER, _namespace(**given))


def test_an_unknown_name_and_a_bad_value_make_one_message():
    with pytest.raises(ProfileError) as caught:
        notebook.from_globals(CHAPTER, _namespace(sbuset=5, subset=0))
    message = str(caught.value)
    assert message.count(CHAPTER) == 1 and "sbuset: not a parameter" in message
    assert "; subset=0: must lie in" in message and "\n" not in message


def test_papermill_own_names_and_shadowing_imports():
    notebook.from_globals(CHAPTER, _namespace(PAPERMILL_INPUT_PATH="in.ipynb"))
    namespace = _namespace()
    namespace["dataset"] = json  # a later cell's `from brainmri.data import dataset`
    with pytest.raises(ProfileError, match="dataset now names a module"):
        notebook.from_globals(CHAPTER, namespace)


# --- the plain papermill command line --------------------------------------------------------

def _papermill(tmp_path, name, *args):
    out = tmp_path / f"{name}.ipynb"
    return subprocess.run([PAPERMILL, str(paths.notebooks_dir() / f"{CHAPTER}.ipynb"),
                           str(out), "--log-level", "ERROR", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_papermill_command_line_sets_and_checks_parameters(tmp_path, synthetic_root):
    run = tmp_path / "run"
    done = _papermill(tmp_path, "ok", "-p", "subset", "3", "-p", "variance_image_size", "16",
                      "-p", "compare_conventions", "False", "-p", "data_dir",
                      str(synthetic_root), "-p", "run_dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run / "variance.json").read_text())
    assert result["convention"]["image_size"] == 16
    assert result["counts"] == {"glioma": 3, "meningioma": 3, "no_tumor": 3, "pituitary": 3}

    for name, args, message in [
            ("unknown", ["-p", "sbuset", "3"], "sbuset: not a parameter of this chapter"),
            ("bad", ["-p", "subset", "0"], "subset=0: must lie in [1, inf]")]:
        folder = tmp_path / f"run-{name}"
        done = _papermill(tmp_path, name, *args, "-p", "data_dir", str(synthetic_root),
                          "-p", "run_dir", str(folder))
        assert done.returncode != 0
        assert done.stderr.count(message) == 1, done.stderr[-3000:]
        assert done.stderr.count("ProfileError") == 1
        assert "Traceback" not in done.stderr.split("Exception encountered")[1]
        assert not folder.exists()  # refused before any work
