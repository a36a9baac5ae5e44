"""`brainmri run` (and the other verbs' shared command-line plumbing) against the cases of
issue 36 item 9: error messages start on their first line, Ctrl-C says one true thing
once, one exit-code convention for every verb, only named profiles, the Python API
refuses what the CLI refuses, and a write error on standard output is never a traceback.
(``brainmri predict``'s own cases are in test_predict_hardening.py.)"""

import errno
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from brainmri import cli
from brainmri.core import paths
from brainmri.core.errors import BrainMRIError, ProfileError
from brainmri.report.series import profiles, runner
from test_pipeline import make_project

VERBS = ("run", "book", "html", "predict", "data", "throughput", "tables")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """test_pipeline's two-step project, with a `test` profile and no notebook executed:
    ``calls`` records the steps that would have run."""
    make_project(tmp_path, monkeypatch)
    monkeypatch.setattr(runner, "finish_notebook", lambda *args, **kwargs: None)
    calls = []

    def execute(step, params, run, output):
        calls.append(step.name)
        output.write_text("{}")

    monkeypatch.setattr(runner, "_execute", execute)
    return tmp_path, calls


def _run(capsys, root, *extra):
    code = cli.main(["run", "--profile", "test", "--results-dir", str(root / "r"), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _state(root):
    return json.loads((root / "r" / "test" / "state.json").read_text())


# ------------------------------------------------ 1. an error starts on its first line

def test_a_failed_step_error_starts_on_its_first_line(project, capsys, monkeypatch):
    """It used to start with a blank line ("\\nerror: ...")."""
    root, _ = project

    def fail(step, *args):
        raise RuntimeError("planted")

    monkeypatch.setattr(runner, "_execute", fail)
    code, _, err = _run(capsys, root)
    assert code == cli.EXIT_FAILED
    assert err.startswith("error: notebook 01_first.ipynb (step '01_first') failed"), err
    assert "\n\n" not in err and "Traceback" not in err


def test_an_argument_error_is_one_line_from_the_first(project, capsys):
    root, calls = project
    code, out, err = _run(capsys, root, "--set", "size=-1")
    assert code == cli.EXIT_USAGE and out == "" and not calls
    assert err.startswith("error: --set size=-1: must lie in") and err.count("\n") == 1, err


def test_a_step_stopped_at_its_budget_pauses_the_run_and_the_same_command_goes_on(
        project, capsys, monkeypatch):
    """`make study`: chapter 08c stops at its time budget (study.StudyBudgetSpent). That
    used to read as a failed step (exit 1, "FAILED"). It is a pause: exit 3, one line on
    stderr saying how to go on, and the next sitting counts the paused attempt's time."""
    from papermill.exceptions import PapermillExecutionError

    root, calls = project
    execute = runner._execute
    spent = ("the study's budget of 1 minutes is spent: 2 models trained in it; run the "
             "same command again to go on")

    def spend_once(step, params, run, output):
        execute(step, params, run, output)
        if step.name.startswith("02") and calls.count(step.name) == 1:
            raise PapermillExecutionError(3, 1, "train()", "StudyBudgetSpent", spent, [])

    monkeypatch.setattr(runner, "_execute", spend_once)
    code, out, err = _run(capsys, root)
    assert code == runner.EXIT_PAUSED == 3
    assert re.fullmatch(r"\[2/2\] 02_second: paused at its time budget \(\d+\.\d s\)",
                        out.splitlines()[-1]), out
    assert err == f"paused: {spent}\n" and "FAILED" not in out
    paused = _state(root)["02_second"]
    assert paused["status"] == "paused" and paused["attempts"] == 1
    code, out, err = _run(capsys, root)
    assert (code, err) == (cli.EXIT_OK, "")
    assert calls == ["01_first", "02_second", "02_second"]  # 01 kept; 02 goes on
    entry = _state(root)["02_second"]
    assert entry["status"] == "ok" and entry["attempts"] == 2
    assert entry["seconds"] >= paused["seconds"]


# --------------------------------------------------- 2. Ctrl-C: one message, on stderr

@pytest.mark.parametrize("where", ["runner", "kernel"])
def test_ctrl_c_says_once_on_stderr_that_the_same_command_resumes(project, capsys,
                                                                  monkeypatch, where):
    """stdout used to say "rerun the same command to resume" and stderr "rerun the same
    command to start again". Ctrl-C reaches the kernel too: when papermill reports the
    kernel's KeyboardInterrupt first, it is the same interruption, not a failed step."""
    from papermill.exceptions import PapermillExecutionError

    root, calls = project
    execute = runner._execute

    def interrupt_second(step, params, run, output):
        if step.name.startswith("02"):
            if where == "runner":
                raise KeyboardInterrupt
            raise PapermillExecutionError(3, 1, "sleep(60)", "KeyboardInterrupt", "", [])
        execute(step, params, run, output)

    monkeypatch.setattr(runner, "_execute", interrupt_second)
    code, out, err = _run(capsys, root)
    assert code == cli.EXIT_INTERRUPTED
    assert re.fullmatch(r"\[2/2\] 02_second: interrupted \(\d+\.\d s\)", out.splitlines()[-1])
    assert "rerun" not in out and "resume" not in out and "start again" not in err
    assert err == ("error: interrupted (Ctrl-C); the finished steps are kept: rerun the "
                   "same command to resume.\n"), err
    assert [s["status"] for s in _state(root).values()] == ["ok", "interrupted"]

    monkeypatch.setattr(runner, "_execute", execute)  # which is true: it resumes
    code, out, err = _run(capsys, root)
    assert code == 0 and "01_first: unchanged since last run, skipped" in out
    assert calls == ["01_first", "02_second"]


def test_ctrl_c_of_another_verb_still_says_start_again(monkeypatch, capsys):
    from brainmri.report.publish import export

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_run", interrupt)
    assert cli.main(["html", "--run", "x"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == ("error: interrupted (Ctrl-C); rerun the same command "
                                       "to start again.\n")


# ------------------------------------------------- 3. one exit-code convention, README'd

@pytest.mark.parametrize("argv", [
    ["run", "--run", ""],
    ["run", "--only", ""],
    ["run", "--set", "epochs="],
    ["run", "--profile", "nope"],
    ["run", "--only", "99"],
    ["run", "--set", "epochs=null"],
    ["run", "--run", "../escape"],
    ["book", "--run", ""],
    ["book", "--run", "../x"],
    ["html", "--run", ""],
    ["html", "--run", "/etc"],
    ["tables", "--run", ""],
    ["data", "where", "--dataset", "nope"],
    ["data", "where", "--data-dir", ""],
    ["throughput", "--steps", "0"],
    ["throughput", "--augment", "bogus"],
    ["throughput", "--image-size", "-3"],
    ["throughput", "--dataset", ""],
    ["predict", "x.png", "--csv", ""],
])
def test_every_verbs_argument_errors_exit_2_with_one_line(argv, tmp_path, monkeypatch,
                                                          capsys):
    """`run`'s argument errors used to exit 1 where `predict`'s exit 2 (argparse's code
    for usage errors, which every verb now uses)."""
    monkeypatch.setattr(runner, "_execute", lambda *args: pytest.fail("ran a step"))
    monkeypatch.chdir(tmp_path)
    if argv[0] == "run":
        argv = [*argv, "--results-dir", str(tmp_path / "r")]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("verb", VERBS)
def test_argparse_usage_errors_exit_2_for_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main([verb, "--no-such-option"])
    assert stopped.value.code == cli.EXIT_USAGE


def test_a_failed_step_and_a_run_in_use_exit_1(project, capsys, monkeypatch):
    import fcntl

    from brainmri.core.runfolder import RunFolder

    root, _ = project
    folder = RunFolder.named("test", root / "r").create()
    with open(folder.lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = _run(capsys, root)
    assert code == cli.EXIT_FAILED and err.startswith("error: run 'test' is in use"), err


def test_the_readme_lists_the_exit_codes_the_cli_uses():
    readme = (paths.project_root() / "README.md").read_text()
    section = readme[readme.index("Exit codes, the same for every `brainmri` verb"):]
    section = section[:section.index("\n\n", section.index("- `130`"))]
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, runner.EXIT_PAUSED,
                 cli.EXIT_INTERRUPTED):
        assert f"- `{code}` " in section, code
    assert all(f"`{verb}`" in section for verb in VERBS)


# --------------------------------------------------------- 4. only named profiles

@pytest.mark.parametrize("given", ["OUTSIDE", "../outside", "outside.yaml", "test.yaml",
                                   "params/test", "./test"])
def test_a_profile_path_is_refused_with_the_named_profiles(project, capsys, given):
    """`--profile /tmp/x.yaml` used to load YAML from outside params/."""
    root, calls = project
    outside = root / "outside.yaml"
    outside.write_text(yaml.safe_dump({"description": "from outside",
                                       "chapters": {"01_first": {"size": 7}}}))
    given = str(outside) if given == "OUTSIDE" else given
    code = cli.main(["run", "--profile", given, "--results-dir", str(root / "r")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and not calls and not (root / "r").exists()
    assert err == (f"error: profile {given!r} is not a profile name: give one of base, test "
                   f"(params/<name>.yaml; a path is not accepted).\n"), err
    with pytest.raises(ProfileError, match="not a profile name"):
        profiles.load_profile(given)


def test_run_help_says_only_named_profiles(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "params/<NAME>.yaml: base, full, quick, reference" in help_text, help_text
    assert "A path is refused" in help_text


# --------------------------------------------- 5. the Python API refuses empty values

@pytest.mark.parametrize("kwargs,match", [
    ({"run": ""}, r"--run is empty \(''\)"),
    ({"run": "  "}, r"--run is empty \('  '\)"),
    ({"only": ""}, r"--only is empty \(''\)"),
    ({"dataset": ""}, r"--dataset is empty \(''\)"),
    ({"overrides": {"size": ""}}, "--set size=: the value is empty"),
    ({"run": "../x"}, "--run '../x': not a plain name"),
])
def test_the_python_api_refuses_empty_values_like_the_cli(project, kwargs, match):
    """`run(..., run="")` used to run as the profile's name (results/test)."""
    root, calls = project
    with pytest.raises(BrainMRIError, match=match):
        runner.run("test", results_root=root / "r", **kwargs)
    assert not calls and not (root / "r").exists()
    assert runner.run("test", run=None, results_root=root / "r") == root / "r" / "test"


# ------------------------------------------ 6. a write error on standard output

class _Broken:
    """A standard output whose reader left (or whose disk is full)."""

    def __init__(self, error=errno.EPIPE):
        self.error = error
        self.encoding = "utf-8"

    def write(self, text):
        raise OSError(self.error, os.strerror(self.error))

    def flush(self):
        raise OSError(self.error, os.strerror(self.error))

    def isatty(self):
        return False


def _stdout_error(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: cannot write to standard output ("), err
    return err


@pytest.mark.parametrize("verb", [None, *VERBS])
@pytest.mark.parametrize("error", [errno.EPIPE, errno.ENOSPC, errno.EBADF])
def test_help_on_a_broken_stdout_is_one_line_for_every_verb(verb, error, monkeypatch, capsys):
    """argparse swallows the write error of --help; the interpreter's last flush then
    printed "Exception ignored ... BrokenPipeError"."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", _Broken(error))
    assert cli.main([*([verb] if verb else []), "--help"]) == cli.EXIT_FAILED
    assert sys.stdout.__class__ is _Broken  # put back as it was
    _stdout_error(capsys.readouterr().err)


def test_a_run_on_a_broken_stdout_stops_with_one_line_and_resumes(project, capsys,
                                                                  monkeypatch):
    """`brainmri run ... | head -1`: the first step's line goes out, the next fails."""
    root, calls = project

    class HeadOne(_Broken):
        lines = 0

        def write(self, text):
            if self.lines >= 1:
                super().write(text)
            self.lines += text.count("\n")
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", HeadOne())
    code = cli.main(["run", "--profile", "test", "--results-dir", str(root / "r")])
    monkeypatch.undo()
    err = _stdout_error(capsys.readouterr().err)
    assert code == cli.EXIT_FAILED and "rerun the same command to resume" in err
    assert calls == ["01_first"] and _state(root)["01_first"]["status"] == "ok"


@pytest.mark.parametrize("verb,target,argv", [
    ("html", "brainmri.report.publish.export.export_run", ["--run", "x"]),
    ("tables", "brainmri.report.publish.blocks.update_all", ["--run", "x"]),
    ("data", "brainmri.data.sources.locate", ["where", "--dataset", "sartaj"]),
    ("throughput", "brainmri.modeling.throughput.run", []),
])
def test_every_verbs_output_on_a_broken_stdout_is_one_line(verb, target, argv, monkeypatch,
                                                           capsys, tmp_path):
    module, name = target.rsplit(".", 1)
    result = {"export_run": [tmp_path / "a.html"], "update_all": [paths.project_root() / "x"],
              "locate": tmp_path, "run": {"real_img_per_s": 1, "synthetic_img_per_s": 2,
                                          "ratio_real_over_synthetic": 0.5}}[name]
    monkeypatch.setattr(__import__(module, fromlist=[name]), name, lambda *a, **k: result)
    monkeypatch.setattr(sys, "stdout", _Broken())
    assert cli.main([verb, *argv]) == cli.EXIT_FAILED
    monkeypatch.undo()
    _stdout_error(capsys.readouterr().err)


def test_predict_table_on_a_broken_stdout_is_a_stdout_error(monkeypatch):
    """predict prints its table, a name that is not UTF-8 through the binary buffer:
    both ways give StdoutError, which main reports in one line."""
    class Buffered(_Broken):
        buffer = _Broken()

        def write(self, text):
            text.encode("utf-8")  # strict, like a UTF-8 terminal: surrogates fail here
            super().write(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Buffered())
    guard = cli._guard_stdout()
    try:
        for text in ("path,p\na.png,1\n", "path,p\na\udcff.png,1\n"):
            with pytest.raises(cli.StdoutError):
                cli._print_table(text)
    finally:
        cli._release_stdout(guard)
    assert guard.failed is not None


def _brainmri(*argv, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(paths.project_root() / "lib")}
    return subprocess.run([sys.executable, "-m", "brainmri", *argv], stderr=subprocess.PIPE,
                          text=True, env=env, timeout=120, **kwargs)


def test_a_closed_stdout_and_a_closed_pipe_give_one_line_in_a_real_process():
    """The issue's reproductions: `brainmri run --help >&-` and a pipe whose reader has
    gone (`| head -1`, deterministic here: the read end is closed before the start)."""
    closed = _brainmri("run", "--help", stdout=subprocess.DEVNULL,
                       preexec_fn=lambda: os.close(1))
    assert closed.returncode == cli.EXIT_FAILED
    assert closed.stderr == ("error: cannot write to standard output (it is closed); "
                             "stopped.\n"), closed.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        piped = _brainmri("predict", "--help", stdout=write_end)
    finally:
        os.close(write_end)
    assert piped.returncode == cli.EXIT_FAILED
    assert piped.stderr == "error: cannot write to standard output (Broken pipe); stopped.\n"
