"""The papermill runner and the profiles: parameter resolution and checks, failure
reporting, resuming, provenance."""

import json

import nbformat
import pytest
import yaml

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError, ProfileError
from brainmri.report.series import cells as param_cells
from brainmri.report.series import notebook, portable, profiles, runner


def _notebook(path, body_src):
    """A chapter of the test project: its parameters cell declares BASE's values (as
    `make params-cells` writes them), then the cell that reads them back, then the body."""
    chapter = BASE["chapters"][path.stem]
    values = {k: v for group in chapter["shared"] for k, v in BASE["shared"][group].items()}
    values.update(chapter["params"])
    params_cell = "".join(f"{k} = {v!r}  # help\n" for k, v in values.items()) + "run_dir = None"
    cells = [nbformat.v4.new_markdown_cell("# Test notebook"),
             nbformat.v4.new_code_cell(params_cell),
             nbformat.v4.new_code_cell(param_cells.READ_BACK.format(chapter=path.stem)),
             nbformat.v4.new_code_cell(body_src)]
    cells[1].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


WRITE_FIRST = ("from brainmri.report.series import notebook\n"
               "p = notebook.setup('01_first', params, run_dir)\n"
               "import json\n"
               "(p.run.root / 'first.json').write_text(json.dumps({'size': p.size,"
               " 'dataset': p.dataset}))")
SECOND = ("from brainmri.report.series import notebook\n"
          "p = notebook.setup('02_second', params, run_dir)\n"
          "if p.fail:\n    raise ValueError('planted failure')\n"
          "(p.run.root / 'second.txt').write_text('ok')")

BASE = {
    "description": "test base",
    "shared": {"data": {"dataset": "sartaj", "seed": 42}},
    "chapters": {
        "01_first": {"shared": ["data"], "params": {"size": 1}},
        "02_second": {"shared": [], "params": {"fail": False}},
    },
    "series": [{"notebook": "01_first"}, {"notebook": "02_second"}],
    "rules": {"choices": {"dataset": ["sartaj", "nickparvar"]}, "ranges": {"size": [1, 100]}},
}


def make_project(tmp_path, monkeypatch, first: str = "pass", second: str = "pass"):
    """Two tiny chapters (bodies ``first`` and ``second``), BASE as base.yaml and an empty
    `test` profile under ``tmp_path``, made the project's: (notebooks, params) folders.
    Other test files build their two-step project with it too."""
    nbdir, pdir = tmp_path / "notebooks", tmp_path / "params"
    nbdir.mkdir()
    pdir.mkdir()
    monkeypatch.setattr(paths, "notebooks_dir", lambda: nbdir)
    monkeypatch.setenv("BRAIN_MRI_PARAMS", str(pdir))  # the notebooks' kernels read it too
    monkeypatch.setattr(runner, "_check_data", lambda resolved: {})
    _notebook(nbdir / "01_first.ipynb", first)
    _notebook(nbdir / "02_second.ipynb", second)
    (pdir / "base.yaml").write_text(yaml.safe_dump(BASE))
    (pdir / "test.yaml").write_text(yaml.safe_dump({"description": "t"}))
    return nbdir, pdir


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project of two tiny notebooks, a base.yaml and a `test` profile writer."""
    _, pdir = make_project(tmp_path, monkeypatch, WRITE_FIRST, SECOND)

    def write_profile(**sections):
        (pdir / "test.yaml").write_text(yaml.safe_dump({"description": "t", **sections}))
    write_profile()
    return tmp_path, write_profile


def _first(run_dir):
    return json.loads((run_dir / "first.json").read_text())


def test_parameters_flow_from_base_and_profile_to_the_notebook(project):
    root, write_profile = project
    write_profile(chapters={"01_first": {"size": 7}})
    run_dir = runner.run("test", results_root=root / "results")
    assert _first(run_dir) == {"size": 7, "dataset": "sartaj"}
    executed = nbformat.read(run_dir / "notebooks" / "01_first.ipynb", 4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "size = 7" in injected[0].source  # papermill's own way: one variable each
    # the run folder lies outside the project: named through the variable the runner sets
    assert 'run_dir = "$BRAIN_MRI_RESULTS/test"' in injected[0].source
    assert str(root) not in (run_dir / "notebooks" / "01_first.ipynb").read_text()
    hidden = [c for c in executed.cells
              if {"injected-parameters", "parameters"} & set(c.metadata.get("tags", []))]
    assert len(hidden) == 2 and all("remove-cell" in c.metadata.tags for c in hidden)
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["profile"] == "test" and set(env["wall_time_s"]) == {"01_first", "02_second"}
    assert len(env["invocations"]) == 1 and env["invocations"][0]["library"]
    runner.run("test", results_root=root / "results")  # resumed: every step skipped
    env = json.loads((run_dir / "environment.json").read_text())
    assert [i["library"] for i in env["invocations"]] == [env["invocations"][0]["library"]] * 2
    runner.run("test", results_root=root / "results", force=True)  # a fresh run: one sitting
    assert len(json.loads((run_dir / "environment.json").read_text())["invocations"]) == 1
    assert "keras" in env["packages"]
    recorded = yaml.safe_load((run_dir / "params.yaml").read_text())
    assert recorded["steps"]["01_first"]["size"] == 7


def test_executed_notebooks_name_no_path_of_the_machine(project):
    root, _ = project
    _notebook(root / "notebooks" / "01_first.ipynb",
              WRITE_FIRST + "\nimport warnings\nwarnings.warn('a warning names its file')\n"
              "print(p.run.root, p.run.root.resolve())\np.run.root / 'first.json'")
    run_dir = runner.run("test", results_root=root / "results")
    text = (run_dir / "notebooks" / "01_first.ipynb").read_text()
    assert "$BRAIN_MRI_RESULTS/test\\n" in text  # printed; and the cell's PosixPath:
    assert "PosixPath('$BRAIN_MRI_RESULTS/test/first.json')" in text
    assert "<cell>:" in text and "UserWarning" in text
    for machine in (str(root), str(root.resolve()), "/tmp/"):
        assert machine not in text
    metadata = nbformat.read(run_dir / "notebooks" / "01_first.ipynb", 4).metadata.papermill
    assert metadata.input_path == "notebooks/01_first.ipynb"
    assert metadata.output_path == "$BRAIN_MRI_RESULTS/test/notebooks/01_first.ipynb"


def test_data_dir_is_injected_relative_or_as_a_variable(tmp_path, monkeypatch):
    from brainmri.core.runfolder import RunFolder

    inside = RunFolder(paths.project_root() / "results" / "x")
    injected, env = portable.portable(inside, {"data_dir": str(tmp_path / "data"), "seed": 1})
    assert injected == {"data_dir": "$BRAIN_MRI_DATA", "seed": 1, "run_dir": "results/x"}
    assert env == {"BRAIN_MRI_DATA": str(tmp_path / "data")}
    monkeypatch.setenv("BRAIN_MRI_DATA", env["BRAIN_MRI_DATA"])
    assert notebook.local_path("$BRAIN_MRI_DATA", "data_dir") == tmp_path / "data"
    project_data = paths.project_root() / "data" / "raw"
    injected, env = portable.portable(inside, {"data_dir": str(project_data)})
    assert injected["data_dir"] == "data/raw" and env == {}
    assert notebook.local_path("data/raw", "data_dir") == project_data
    monkeypatch.delenv("BRAIN_MRI_RESULTS", raising=False)
    with pytest.raises(BrainMRIError, match=r"\$BRAIN_MRI_RESULTS, which is not set"):
        notebook.local_path("$BRAIN_MRI_RESULTS/quick", "run_dir")


def test_a_notebook_opened_by_hand_gets_base_defaults(project):
    assert notebook.parameters("01_first") == {"dataset": "sartaj", "seed": 42, "size": 1}
    with pytest.raises(ProfileError, match="sise"):
        notebook.parameters("01_first", {"sise": 3})


@pytest.mark.parametrize("sections,match", [
    ({"chapters": {"01_first": {"sise": 3}}}, "sise"),
    ({"shared": {"dat": {"seed": 1}}}, "dat"),
    ({"steps": {"03_third": {"size": 2}}}, "03_third"),
    ({"chapters": {"01_first": {"size": "big"}}}, "expected int"),
    ({"chapters": {"01_first": {"size": 500}}}, r"must lie in \[1, 100\]"),
    ({"shared": {"data": {"dataset": "brats"}}}, "allowed values are sartaj, nickparvar"),
])
def test_profile_typos_and_bad_values_are_errors(project, sections, match):
    root, write_profile = project
    write_profile(**sections)
    with pytest.raises(ProfileError, match=match):
        runner.run("test", results_root=root / "results")


@pytest.mark.parametrize("sets,match", [
    (["sizez=3"], "--set sizez: no step of this run takes"),
    (["size=abc"], "expected int"),
    (["size=-1"], "must lie in"),
    (["seed=1.5"], "expected int"),
])
def test_command_line_overrides_are_checked_before_anything_runs(project, capsys, sets, match):
    root, _ = project
    args = ["run", "--profile", "test", "--results-dir", str(root / "r")]
    for item in sets:
        args += ["--set", item]
    from brainmri import cli

    assert cli.main(args) == cli.EXIT_USAGE  # an argument error: 2, as for every verb
    err = capsys.readouterr().err
    assert match in err or __import__("re").search(match, err), err
    assert not (root / "r" / "test" / "notebooks" / "01_first.ipynb").exists()


def test_dataset_option_sets_only_the_default(project):
    """`--dataset` changes the shared default; a step that names its dataset keeps it."""
    root, write_profile = project
    write_profile(steps={"01_first": {"dataset": "sartaj"}})
    run_dir = runner.run("test", results_root=root / "results", dataset="nickparvar")
    assert _first(run_dir)["dataset"] == "sartaj"
    write_profile()
    run_dir = runner.run("test", results_root=root / "results", dataset="nickparvar")
    assert _first(run_dir)["dataset"] == "nickparvar"


def test_failure_names_notebook_and_cell_then_resume(project, capsys):
    root, write_profile = project
    write_profile(chapters={"02_second": {"fail": True}})
    with pytest.raises(BrainMRIError) as info:
        runner.run("test", results_root=root / "results")
    message = str(info.value)
    assert "02_second.ipynb" in message and "cell" in message
    assert "ValueError: planted failure" in message
    run_dir = root / "results" / "test"
    partial = nbformat.read(run_dir / "notebooks" / "02_second.ipynb", 4)
    assert any(o.get("output_type") == "error" for c in partial.cells
               for o in c.get("outputs", []))
    first_mtime = (run_dir / "notebooks" / "01_first.ipynb").stat().st_mtime_ns

    write_profile()
    runner.run("test", results_root=root / "results")
    out = capsys.readouterr().out
    assert "01_first: unchanged since last run, skipped" in out
    assert (run_dir / "notebooks" / "01_first.ipynb").stat().st_mtime_ns == first_mtime
    assert (run_dir / "second.txt").read_text() == "ok"


def test_a_resumed_step_counts_the_time_of_its_stopped_attempts(project):
    """A process killed outright records no time; the resumed step's seconds include the
    killed attempt (until its last write) and any earlier ones, but only for the same
    code and parameters."""
    import os
    import time

    from brainmri.report.series import environment

    root, _ = project
    runner.run("test", results_root=root / "results")
    run_dir = root / "results" / "test"
    state = json.loads((run_dir / "state.json").read_text())
    started = time.time() - 1000
    # as a restart leaves it: "running", no seconds, an earlier stopped attempt of 5 s
    state["02_second"].update(status="running", started=started, earlier_s=5.0, attempts=2)
    state["02_second"].pop("seconds")
    (run_dir / "state.json").write_text(json.dumps(state))
    for trace in (run_dir / "notebooks" / "02_second.ipynb", run_dir / "logs" / "02_second.log"):
        if trace.exists():
            os.utime(trace, (started + 60, started + 60))
    # training wrote a model's history later than the notebook was last saved; a file
    # written after the stop (here: dated in the future) is not the stopped attempt's
    history, later = (run_dir / "models" / "m" / "history.csv", run_dir / "models" / "x.csv")
    history.parent.mkdir(parents=True)
    for path, when in ((history, started + 80), (later, time.time() + 3600)):
        path.write_text("epoch\n0\n")
        os.utime(path, (when, when))
    runner.run("test", results_root=root / "results")
    entry = json.loads((run_dir / "state.json").read_text())["02_second"]
    assert entry["status"] == "ok" and entry["attempts"] == 3
    assert 85 <= entry["seconds"] < 85 + 120  # 5 + 80 + this attempt's own seconds
    assert entry["cpu"] == environment.describe_cpu()
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["wall_time_s"]["02_second"] == entry["seconds"]

    # stopped under other code or parameters (another key): its time is not this step's
    state = json.loads((run_dir / "state.json").read_text())
    state["02_second"].update(status="running", started=started, key="other")
    (run_dir / "state.json").write_text(json.dumps(state))
    runner.run("test", results_root=root / "results")
    entry = json.loads((run_dir / "state.json").read_text())["02_second"]
    assert entry["attempts"] == 1 and entry["seconds"] < 65


def test_each_sitting_records_the_cpu_it_ran_on(project, tmp_path):
    """A run resumed on another machine may not retrain bit for bit: each sitting says
    which CPU and vector instruction sets it had."""
    from brainmri.report.series import environment

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n"
                    "flags\t\t: fpu sse2 avx avx2 fma avx512f\n")
    assert environment.describe_cpu(info) == "Test CPU 9000 (avx, avx2, fma, avx512f)"
    info.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert environment.describe_cpu(info) == "Old CPU (no AVX)"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # an ARM machine
    assert "AVX" not in environment.describe_cpu(info)

    root, _ = project
    runner.run("test", results_root=root / "results")
    runner.run("test", results_root=root / "results")
    env = json.loads((root / "results" / "test" / "environment.json").read_text())
    assert [s["cpu"] for s in env["invocations"]] == [environment.describe_cpu()] * 2


def test_partial_runs_accumulate_provenance(project):
    """`--only` reruns its steps and keeps every other step's parameters, status and
    data fingerprints; each step records the library hash and revision it ran with."""
    root, write_profile = project
    runner.run("test", results_root=root / "results")
    run_dir = root / "results" / "test"
    env = json.loads((run_dir / "environment.json").read_text())
    env["datasets"] = {"sartaj": {"path": "x", "fingerprint": "f" * 16}}
    (run_dir / "environment.json").write_text(json.dumps(env))
    write_profile(chapters={"02_second": {"fail": False}, "01_first": {"size": 3}})
    runner.run("test", only="02", results_root=root / "results")
    recorded = yaml.safe_load((run_dir / "params.yaml").read_text())
    assert set(recorded["steps"]) == {"01_first", "02_second"}
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["datasets"]["sartaj"]["fingerprint"] == "f" * 16
    state = json.loads((run_dir / "state.json").read_text())
    assert {s["library"] for s in state.values()} == {runner.library_hash()}
    assert all("revision" in s for s in state.values())


def test_cli_exit_code_and_message(project, capsys):
    from brainmri import cli

    root, write_profile = project
    write_profile(chapters={"02_second": {"fail": True}})
    assert cli.main(["run", "--profile", "test", "--results-dir", str(root / "r")]) == 1
    assert "error: notebook 02_second.ipynb" in capsys.readouterr().err


def test_unknown_profile_lists_available(project):
    with pytest.raises(ProfileError, match="Available: base, test"):
        profiles.load_profile("nope")


def test_unavailable_weights_skip_the_step_and_the_series_goes_on(project, capsys):
    root, write_profile = project
    _notebook(root / "notebooks" / "02_second.ipynb",
              "from brainmri.report.series import notebook\n"
              "p = notebook.setup('02_second', params, run_dir)\n"
              "from brainmri.core.errors import WeightsUnavailableError\n"
              "print('Downloading data from https://example.org/w.h5: 0 bytes')\n"
              # the real message's own second line starts like an error name
              "raise WeightsUnavailableError('skipped: ImageNet weights unavailable.\\nFix: "
              "copy the file')")
    nb = nbformat.read(root / "notebooks" / "02_second.ipynb", 4)
    nb.cells.append(nbformat.v4.new_code_cell("never = 'runs'"))
    nbformat.write(nb, root / "notebooks" / "02_second.ipynb")
    write_profile(series=[{"notebook": "02_second"}, {"notebook": "01_first"}])
    run_dir = runner.run("test", results_root=root / "results")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["02_second"]["status"] == "skipped"
    assert state["01_first"]["status"] == "ok"
    executed = nbformat.read(run_dir / "notebooks" / "02_second.ipynb", 4)
    assert executed.cells[-1].source.startswith("> **Skipped.**")
    assert "ImageNet weights unavailable" in executed.cells[-1].source
    assert not any("never" in c.source for c in executed.cells)
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", [])
                   for c in executed.cells)
    assert "02_second: skipped (skipped: ImageNet weights unavailable" in capsys.readouterr().out


def test_the_runner_reads_a_project_errors_name_as_handed_over_not_as_printed(project):
    """A message whose own line reads exactly like another error ("ValueError: ...") does
    not hide the error's class: the kernel hands the name over in a file."""
    root, write_profile = project
    _notebook(root / "notebooks" / "02_second.ipynb",
              "from brainmri.report.series import notebook\n"
              "p = notebook.setup('02_second', params, run_dir)\n"
              "from brainmri.core.errors import WeightsUnavailableError\n"
              "raise WeightsUnavailableError('skipped: no weights.\\nValueError: as printed')")
    write_profile(series=[{"notebook": "02_second"}])
    run_dir = runner.run("test", results_root=root / "results")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["02_second"]["status"] == "skipped"
    assert state["02_second"]["reason"].startswith("skipped: no weights.")
    handed = run_dir / "logs" / "02_second.error.json"
    assert json.loads(handed.read_text())["ename"] == "WeightsUnavailableError"


@pytest.mark.parametrize("raised, stopped, said", [
    ("from brainmri.core.errors import DatasetNotFoundError\n"
     "raise DatasetNotFoundError('Dataset missing. Set BRAIN_MRI_DATA')",
     BrainMRIError, "DatasetNotFoundError: Dataset missing"),
    # a project error whose name does not end in Error, read from the kernel's output:
    # the study's budget pauses the run (test_run_hardening has the command line's side)
    ("from brainmri.report.studies.study import StudyBudgetSpent\n"
     "raise StudyBudgetSpent('the budget is spent; run the same command again')",
     runner.RunPaused, "^the budget is spent; run the same command again$")])
def test_project_errors_reach_the_failure_message(project, raised, stopped, said):
    root, _ = project
    _notebook(root / "notebooks" / "02_second.ipynb",
              "from brainmri.report.series import notebook\n"
              "p = notebook.setup('02_second', params, run_dir)\n" + raised)
    with pytest.raises(stopped, match=said):
        runner.run("test", results_root=root / "results")


# --- the project's own notebooks and profiles ---------------------------------------------

def test_every_project_notebook_has_one_parameters_cell_and_no_outputs():
    notebooks = sorted(paths.notebooks_dir().glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        nb = nbformat.read(path, 4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("name", ["base", "quick", "full", "reference"])
def test_project_profiles_resolve_for_every_step(name):
    profile = profiles.load_profile(name)
    base = profiles.load_profile("base")
    notebooks = {p.stem for p in paths.notebooks_dir().glob("*.ipynb")}
    assert {s.notebook for s in profile.steps} == notebooks
    for step in profile.steps:
        params = profile.resolve(step)
        assert set(params) == set(base.declared(step.notebook)), step.name
        # every value is acceptable to the rules of base.yaml
        profiles.check_values(profile, params, f"{name}/{step.name}")
    assert profile.resolve(next(s for s in profile.steps
                                if s.name == "08b_compact_cnn-nickparvar"))["dataset"] \
        == "nickparvar"


def test_reference_profile_ships_the_nickparvar_compact_model():
    profile = profiles.load_profile("reference")
    steps = {s.name: profile.resolve(s, dataset="sartaj") for s in profile.steps}
    # the path is written once in the library (core.paths) and once in reference.yaml
    assert steps["08b_compact_cnn-nickparvar"]["export_to"] == paths.SHIPPED_MODEL.as_posix()
    assert steps["08b_compact_cnn-nickparvar"]["dataset"] == "nickparvar"  # --dataset lost
    assert steps["08b_compact_cnn"]["export_to"] is None


# --- `brainmri run` on the project's own profiles: arguments checked before anything ------

@pytest.fixture
def no_notebook_runs(tmp_path, monkeypatch):
    """The project's profiles with the notebooks replaced by a recorder: what each step
    would receive, and nothing executed."""
    received = {}

    def record(step, params, run, output, log=None):
        received[step.name] = params
        output.write_text("{}")

    monkeypatch.setattr(runner, "_execute", record)
    monkeypatch.setattr(runner, "finish_notebook", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner, "_check_data", lambda resolved: {})
    return received


def _cli_run(tmp_path, *extra):
    from brainmri import cli

    return cli.main(["run", "--profile", "quick", "--results-dir", str(tmp_path / "r"),
                     *extra])


@pytest.mark.parametrize("item,match", [
    ("learning_rate=.nan", "learning_rate=nan: not a finite number"),
    ("learning_rate=.inf", "learning_rate=inf: not a finite number"),
    ("epochs=null", "epochs=None: null is not accepted"),
    ("samples_per_class=-3", r"samples_per_class=-3: must lie in \[1, "),
    ("ig_steps=0", r"ig_steps=0: must lie in \[1, "),
    ("widths=[8, -1]", r"widths=\[8, -1\]: item -1: must lie in \[1, "),
    ("datasets=[sartaj, brats]", "item 'brats': allowed values are"),
    ("variant=/../../x", "variant='/../../x': not a plain name"),
    ("model_name=../x", "model_name='../x': "),
    ("export_to=../outside.keras", "export_to='../outside.keras': "),
    ("export_to=models/x.h5", "a .keras file"),
    ("repeat=[../x]", "item '../x': not a plain name"),
    ("repeat=[nope]", r"\['nope'\] not the name of a variant"),
    ("models=[../x]", "item '../x': not a plain name"),
    ("settings={learning_rate: .nan}", "learning_rate=nan: not a finite number"),
    ("variants=[{name: ../x}]", "not a plain name"),
    ("base_chapter=99_nope", "not a chapter of params/base.yaml"),
])
def test_every_set_value_is_checked_before_anything_is_created(
        tmp_path, no_notebook_runs, capsys, item, match):
    assert _cli_run(tmp_path, "--set", item) == 2
    err = capsys.readouterr().err
    assert __import__("re").search(match, err), err
    assert not no_notebook_runs and not (tmp_path / "r").exists()


def test_set_error_quotes_the_steps_own_default(tmp_path, no_notebook_runs, capsys):
    """Chapter 05's epochs default is 6 (08b's is 40): the message says 6."""
    assert _cli_run(tmp_path, "--only", "05_relu_cnn", "--set", "epochs=null") == 2
    err = capsys.readouterr().err
    assert "(default: 6 in 05_relu_cnn)" in err and "40" not in err, err
    assert _cli_run(tmp_path, "--only", "05_relu_cnn,08b_compact_cnn", "--set",
                    "epochs=.nan") == 2
    err = capsys.readouterr().err
    assert "default: 6 in 05_relu_cnn; 40 in 08b_compact_cnn, 08b_compact_cnn-nickparvar" \
        in err, err


def test_set_numbers_are_read_as_numbers_and_paths_as_text(tmp_path, no_notebook_runs):
    assert _cli_run(tmp_path, "--only", "05_relu_cnn", "--set", "learning_rate=1e-3",
                    "--set", "variant=2024", "--set", "data_dir=0123",
                    "--set", "export_to=models/x.keras") == 0
    params = no_notebook_runs["05_relu_cnn"]
    assert params["learning_rate"] == 0.001 and isinstance(params["learning_rate"], float)
    assert params["variant"] == "2024" and params["data_dir"] == "0123"
    assert params["export_to"] == "models/x.keras"


def test_a_data_dir_that_yaml_reads_as_a_number_is_a_path(tmp_path, monkeypatch, capsys):
    """`--set data_dir=2024` (a folder named 2024) is a path, not a crash in pathlib."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "_execute", lambda *args, **kwargs: pytest.fail("ran"))
    assert _cli_run(tmp_path, "--only", "01_data_exploration", "--set", "data_dir=2024") == 2
    err = capsys.readouterr().err
    assert "data_dir='2024' does not exist" in err and "TypeError" not in err, err


@pytest.mark.parametrize("extra,match", [
    (["--run", "../escape"], "--run '../escape': not a plain name"),
    (["--run", "ABSOLUTE"], "--run 'ABSOLUTE': not a plain name"),
    (["--run", "fine", "--only", "99"], "--only '99' matches no step"),
])
def test_run_name_and_steps_are_checked_before_any_folder_exists(
        tmp_path, no_notebook_runs, capsys, extra, match):
    absolute = str(tmp_path / "absolute")  # never a folder outside the test's own
    extra = [absolute if e == "ABSOLUTE" else e for e in extra]
    assert _cli_run(tmp_path, *extra) == 2
    assert match.replace("ABSOLUTE", absolute) in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("r", "escape", "absolute"))


def test_export_to_stays_under_models_or_is_an_absolute_keras_file():
    profile = profiles.load_profile("base")
    for good in ("models/brainmri_compact.keras", "models/sub/x.keras", "/srv/x.keras"):
        assert profiles.check_value(profile, "export_to", good) is None, good
    for bad in ("x.keras", "../models/x.keras", "models/../../x.keras", "models/x.h5",
                "results/x.keras", "/srv/../x.keras", ""):
        assert profiles.check_value(profile, "export_to", bad), bad


def test_ctrl_c_at_any_point_is_one_line_and_exit_130(monkeypatch, capsys):
    import argparse

    from brainmri import cli

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "add_arguments", interrupt)  # the import in parser()
    assert cli.main(["run", "--profile", "quick"]) == cli.EXIT_INTERRUPTED
    monkeypatch.undo()
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", interrupt)
    assert cli.main(["run", "--profile", "quick"]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.count("error: interrupted (Ctrl-C)") == 2 and "Traceback" not in err


def test_a_run_folder_in_use_is_refused_at_once(project):
    """A second runner of the same run name fails at once, naming the run and the pid
    of the runner that holds it; the first one's lock goes with it."""
    import fcntl
    import os

    from brainmri.core.runfolder import RunFolder

    root, _ = project
    folder = RunFolder.named("test", root / "results").create()
    with open(folder.lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        with pytest.raises(BrainMRIError, match=r"run 'test' is in use by another brainmri "
                                                r"run \(pid 4242"):
            runner.run("test", results_root=root / "results")
    assert not (folder.notebooks / "01_first.ipynb").exists()
    run_dir = runner.run("test", results_root=root / "results")  # released: runs
    assert _first(run_dir)["size"] == 1
    assert folder.lock.read_text().strip() == str(os.getpid())  # the holder's pid


def test_kernel_and_library_noise_goes_to_the_step_log(project, capfd):
    """The kernel's start-up notices (IPKernelApp), what it writes to its own stderr
    (TF, absl) and warnings in the runner go to logs/<step>.log; the console shows one
    line per step."""
    root, _ = project
    _notebook(root / "notebooks" / "01_first.ipynb",
              WRITE_FIRST + "\nimport os\nos.write(2, b'absl: noisy start-up line\\n')")
    original = runner.finish_notebook

    def warn_then_finish(*args, **kwargs):
        import warnings

        warnings.warn("a library is deprecated", FutureWarning, stacklevel=2)
        return original(*args, **kwargs)

    runner.finish_notebook = warn_then_finish
    try:
        run_dir = runner.run("test", results_root=root / "results")
    finally:
        runner.finish_notebook = original
    out, err = capfd.readouterr()
    for noise in ("IPKernelApp", "absl", "DeprecationWarning", "deprecated"):
        assert noise not in out + err, out + err
    assert [line.split(":")[0] for line in out.splitlines()[1:3]] == \
        ["[1/2] 01_first", "[2/2] 02_second"]
    log = (run_dir / "logs" / "01_first.log").read_text()
    assert "IPKernelApp" in log and "a library is deprecated" in log
