"""The benchmark's child processes (workers, cold starts, first calls, seed-fit runs, the
--isa child) import the same fastlstm as the parent, even when started from a folder that
holds another `fastlstm` package: README's first command runs `fastlstm bench` from the
clone it installed, whose sources lack the compiled extension (reproducer: the workers
asked for the cython backend and found none)."""
import os
import subprocess
import sys

import fastlstm
from fastlstm.benchmark.pool import child_env


def test_children_import_the_parents_fastlstm_not_the_current_folders(tmp_path):
    shadow = tmp_path / "fastlstm"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing sources')\n")
    for argv in (["-c", "import fastlstm; print(fastlstm.__file__)"],
                 ["-m", "fastlstm", "--version"]):
        run = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                             cwd=tmp_path, env=child_env(), timeout=120)
        assert run.returncode == 0, run.stderr
        if argv[0] == "-c":
            assert os.path.samefile(run.stdout.strip(), fastlstm.__file__)
    # without it, the folder's package wins: the case the environment is there for
    plain = subprocess.run([sys.executable, "-c", "import fastlstm"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=120)
    assert "the shadowing sources" in plain.stderr
