"""The papermill runner: parameter resolution, failure reporting and resuming."""

import json

import nbformat
import pytest
import yaml

from brainmri import paths, pipeline, profiles
from brainmri.errors import BrainMRIError, ProfileError


def _notebook(path, params_src, body_src):
    cells = [nbformat.v4.new_markdown_cell("# Test notebook"),
             nbformat.v4.new_code_cell(params_src), nbformat.v4.new_code_cell(body_src)]
    cells[1].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path, monkeypatch):
    nbdir, pdir = tmp_path / "notebooks", tmp_path / "params"
    nbdir.mkdir()
    pdir.mkdir()
    monkeypatch.setattr(paths, "notebooks_dir", lambda: nbdir)
    monkeypatch.setattr(paths, "params_dir", lambda: pdir)
    _notebook(nbdir / "01_first.ipynb", "size = 1\nrun_dir = None",
              "import pathlib, json\n"
              "pathlib.Path(run_dir, 'first.json').write_text(json.dumps({'size': size}))")
    _notebook(nbdir / "02_second.ipynb", "fail = False\nrun_dir = None",
              "x = 1\nif fail:\n    raise ValueError('planted failure')\n"
              "pathlib = __import__('pathlib')\npathlib.Path(run_dir, 'second.txt').write_text('ok')")

    def write_profile(defaults, series):
        (pdir / "test.yaml").write_text(yaml.safe_dump({"defaults": defaults,
                                                         "series": series}))
    return tmp_path, write_profile


def test_parameters_flow_from_profile_to_notebook(project):
    root, write_profile = project
    write_profile({"size": 7, "not_declared_anywhere": 1},
                  [{"notebook": "01_first"}, {"notebook": "02_second"}])
    run_dir = pipeline.run("test", results_root=root / "results")
    assert json.loads((run_dir / "first.json").read_text()) == {"size": 7}
    executed = nbformat.read(run_dir / "notebooks" / "01_first.ipynb", 4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "size = 7" in injected[0].source and "not_declared" not in injected[0].source
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["profile"] == "test" and set(env["wall_time_s"]) == {"01_first", "02_second"}
    assert "keras" in env["packages"]


def test_step_override_of_undeclared_parameter_is_an_error(project):
    root, write_profile = project
    write_profile({}, [{"notebook": "01_first", "params": {"sise": 3}}])
    with pytest.raises(ProfileError, match="sise"):
        pipeline.run("test", results_root=root / "results")


def test_failure_names_notebook_and_cell_then_resume(project, capsys):
    root, write_profile = project
    write_profile({}, [{"notebook": "01_first"},
                       {"notebook": "02_second", "params": {"fail": True}}])
    with pytest.raises(BrainMRIError) as info:
        pipeline.run("test", results_root=root / "results")
    message = str(info.value)
    assert "02_second.ipynb" in message and "cell" in message
    assert "ValueError: planted failure" in message
    run_dir = root / "results" / "test"
    partial = nbformat.read(run_dir / "notebooks" / "02_second.ipynb", 4)
    assert any(o.get("output_type") == "error" for c in partial.cells
               for o in c.get("outputs", []))
    first_mtime = (run_dir / "notebooks" / "01_first.ipynb").stat().st_mtime_ns

    write_profile({}, [{"notebook": "01_first"},
                       {"notebook": "02_second", "params": {"fail": False}}])
    pipeline.run("test", results_root=root / "results")
    out = capsys.readouterr().out
    assert "01_first: unchanged since last run, skipped" in out
    assert (run_dir / "notebooks" / "01_first.ipynb").stat().st_mtime_ns == first_mtime
    assert (run_dir / "second.txt").read_text() == "ok"


def test_cli_exit_code_and_message(project, capsys):
    root, write_profile = project
    write_profile({}, [{"notebook": "02_second", "params": {"fail": True}}])
    code = pipeline.main(["--profile", "test", "--results-dir", str(root / "r")])
    assert code == 1
    assert "error: notebook 02_second.ipynb" in capsys.readouterr().err


def test_unknown_profile_lists_available(project):
    root, write_profile = project
    write_profile({}, [])
    with pytest.raises(ProfileError, match="Available: test"):
        profiles.load_profile("nope")


def test_every_project_notebook_has_one_parameters_cell_and_no_outputs():
    notebooks = sorted(paths.notebooks_dir().glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        nb = nbformat.read(path, 4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_project_profiles_resolve_against_their_notebooks():
    for name in ("quick", "full"):
        profile = profiles.load_profile(name)
        for step in profile.steps:
            assert step.source.exists(), f"{name}: {step.source} missing"
            params = profiles.resolve(profile, step, profiles.declared_parameters(step.source))
            assert params.get("seed", 42) is not None


def test_unavailable_weights_skip_the_step_and_the_series_goes_on(project, capsys):
    root, write_profile = project
    _notebook(root / "notebooks" / "03_transfer.ipynb", "run_dir = None",
              "from brainmri import notebook\nnotebook.setup(run_dir)\n"
              "from brainmri.errors import WeightsUnavailableError\n"
              "print('Downloading data from https://example.org/w.h5: 0 bytes')\n"
              "raise WeightsUnavailableError('skipped: ImageNet weights unavailable. Fix: copy "
              "the file')")
    nb = nbformat.read(root / "notebooks" / "03_transfer.ipynb", 4)
    nb.cells.append(nbformat.v4.new_code_cell("never = 'runs'"))
    nbformat.write(nb, root / "notebooks" / "03_transfer.ipynb")
    write_profile({}, [{"notebook": "03_transfer"}, {"notebook": "01_first"}])
    run_dir = pipeline.run("test", results_root=root / "results")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["03_transfer"]["status"] == "skipped"
    assert state["01_first"]["status"] == "ok"
    executed = nbformat.read(run_dir / "notebooks" / "03_transfer.ipynb", 4)
    assert executed.cells[-1].source.startswith("> **Skipped.**")
    assert "ImageNet weights unavailable" in executed.cells[-1].source
    assert not any("never" in c.source for c in executed.cells)
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", [])
                   for c in executed.cells)
    assert "03_transfer: skipped (skipped: ImageNet weights unavailable" in capsys.readouterr().out


def test_project_errors_reach_the_failure_message(project):
    root, write_profile = project
    _notebook(root / "notebooks" / "04_nodata.ipynb", "run_dir = None",
              "from brainmri import notebook\nnotebook.setup(run_dir)\n"
              "from brainmri.errors import DatasetNotFoundError\n"
              "raise DatasetNotFoundError('Dataset missing. Set BRAIN_MRI_DATA')")
    write_profile({}, [{"notebook": "04_nodata"}])
    with pytest.raises(BrainMRIError, match="DatasetNotFoundError: Dataset missing"):
        pipeline.run("test", results_root=root / "results")
