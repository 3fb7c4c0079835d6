"""The installed package, as a user gets it: pip-installed into a fresh venv, both fast
backends used (forward and backward), then pip-uninstalled.

A package never writes into its own install folder: site-packages is read-only on many
edge images and system installs, and whatever is written there outlives `pip uninstall`
(a leftover site-packages/fastlstm/ holding only numba's cache once shadowed a later
editable install as a namespace package). So: after any use, uninstalling leaves nothing
of fastlstm in site-packages; a run changes nothing in site-packages (every file and
folder compared before and after), also with it read-only, where the platform allows
that for this user; and numba's cache lands in the user's cache folder.

The venv sees the test environment's packages (numpy, scipy, numba, Cython, pip) through a
.pth file, so nothing is downloaded; the wheel is built once, with FASTLSTM_DEBUG=1 (-O1:
a quarter of the -O3 compile time; where files go does not depend on the build flags).
"""
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_build_tools = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None,
    reason="no C compiler: the compiled backend cannot be built here")

# Both fast backends, forward and backward, each checked against the NumPy reference.
USE_BOTH_BACKENDS = textwrap.dedent("""
    import json, numpy as np, fastlstm
    from fastlstm.backends import numba_cpu
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    dy = rng.standard_normal((5, 3, 8)).astype(np.float32)
    ref = fastlstm.LSTM(4, 8, backend="numpy", seed=1)
    y_ref, _ = ref(x)
    dx_ref, _ = ref.backward(dy)
    used = []
    for backend in ("cython", "numba"):
        m = fastlstm.LSTM(4, 8, backend=backend, seed=1)
        y, _ = m(x)
        dx, _ = m.backward(dy)
        np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
        used.append(m.backend_used)
    print(json.dumps({"file": fastlstm.__file__, "used": used,
                      "cache_dir": numba_cpu.CACHE_DIR}))
""")


def _copy_source(dest):
    """What a build from a clone needs: metadata, the package, the compiled sources."""
    dest.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    # build outputs stay behind (Cython's generated C is in build/, never in these folders;
    # src_cython/variants/*.c are sources)
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.pyc")
    for name in ("fastlstm", "src_cython"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A fastlstm wheel built from a copy of this checkout, with the compiled extension."""
    pytest.importorskip("Cython", reason="Cython is needed to build the compiled backend")
    pytest.importorskip("numba", reason="numba is needed for the numba backend")
    tmp = tmp_path_factory.mktemp("wheel")
    _copy_source(tmp / "src")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(tmp / "dist"), str(tmp / "src")],
        capture_output=True, text=True, env={**os.environ, "FASTLSTM_DEBUG": "1"},
        timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (path,) = (tmp / "dist").glob("fastlstm-*.whl")
    return path


class Venv:
    """A fresh venv with fastlstm installed from `wheel` and the test environment's own
    packages visible (after its own site-packages, so its fastlstm is the one imported)."""

    def __init__(self, folder, wheel):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)],
                       check=True, timeout=120)
        self.python = next(p for p in (folder / "bin" / "python",
                                       folder / "Scripts" / "python.exe") if p.exists())
        paths = json.loads(self.run_python(
            "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))").stdout)
        self.site, self.scripts = Path(paths["purelib"]), Path(paths["scripts"])
        outer = [p for p in site.getsitepackages() + [site.getusersitepackages()]
                 if p in sys.path and os.path.isdir(p)]
        (self.site / "_test_environment.pth").write_text("\n".join(outer) + "\n")
        self.pip("install", "--no-deps", "--no-index", str(wheel))
        self.package = self.site / "fastlstm"
        assert (self.package / "__init__.py").exists()

    def run_python(self, code, env=None, prefix=(), cwd=None):
        run = subprocess.run([*prefix, str(self.python), "-c", code], capture_output=True,
                             text=True, env=env, cwd=cwd, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        return run

    def pip(self, *args):
        run = subprocess.run([str(self.python), "-m", "pip", *args], capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        return run


def user_env(tmp_path):
    """A user with an empty home and cache folder; no cache folder chosen by variables,
    no bytecode switches (writing .pyc into the package is a write like any other)."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "FASTLSTM_NUMBA_CACHE_DIR", "NUMBA_CACHE_DIR", "PYTHONPATH", "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "VIRTUAL_ENV")}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "xdg-cache"),
               LOCALAPPDATA=str(home / "AppData" / "Local"))
    return env


def expected_user_cache(env):
    """The per-user cache folder by the platform's convention, for this environment."""
    if sys.platform == "win32":
        return Path(env["LOCALAPPDATA"]) / "fastlstm" / "Cache"
    if sys.platform == "darwin":
        return Path(env["HOME"]) / "Library" / "Caches" / "fastlstm"
    return Path(env["XDG_CACHE_HOME"]) / "fastlstm"


def snapshot(folder):
    """Every file and folder below `folder` with its size and modification time: a write,
    a new file or a removed one changes it (a folder's mtime moves with its entries)."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in [folder, *folder.rglob("*")]}


def both_backends_ran(run, venv):
    """What USE_BOTH_BACKENDS reported, checked: the installed copy ran both backends."""
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).parent == venv.package  # the installed copy, not the checkout
    assert out["used"] == ["cython", "numba"]
    return out


def check_cache_is_the_users(out, env):
    cache = Path(out["cache_dir"])
    assert cache.parent == expected_user_cache(env)
    assert any(p.suffix == ".nbi" for p in cache.rglob("*"))  # numba's index: it cached


def read_only_prefix(folder):
    """A command prefix under which `folder` is read-only even for this user, and a word
    on how; ((), reason) where this platform offers no way (the before/after comparison
    of the folder is then the whole check)."""
    if os.name != "posix":
        return (), "no read-only mount here"
    if os.geteuid() != 0:  # permission bits bind everyone but root
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        return (), "chmod -R a-w"
    unshare = shutil.which("unshare")
    if unshare is None:
        return (), "root, and no unshare for a read-only bind mount"
    # root ignores permission bits: bind-mount the folder read-only in a private mount
    # namespace (a user namespace maps us to root there, so no real privilege is needed)
    prefix = (unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
              'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
              str(folder))
    probe = subprocess.run([*prefix, "sh", "-c", 'touch "$0/.probe" 2>/dev/null && echo '
                            'writable || echo read-only', str(folder)],
                           capture_output=True, text=True, timeout=60)
    if probe.stdout.strip() != "read-only":
        (folder / ".probe").unlink(missing_ok=True)
        return (), f"root, and no read-only bind mount here ({probe.stderr.strip()[-200:]})"
    return prefix, "a read-only bind mount"


@needs_build_tools
def test_a_read_only_site_packages_is_never_written(wheel, tmp_path):
    venv = Venv(tmp_path / "venv", wheel)
    env = user_env(tmp_path)
    before = snapshot(venv.site)
    prefix, how = read_only_prefix(venv.site)
    try:
        run = venv.run_python(USE_BOTH_BACKENDS, env=env, prefix=prefix, cwd=tmp_path)
        info = subprocess.run([*prefix, str(venv.scripts / "fastlstm"), "info"],
                              capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
    finally:
        if how.startswith("chmod"):  # give the folder back to pytest to clean up
            subprocess.run(["chmod", "-R", "u+w", str(venv.site)], check=True)
    after = snapshot(venv.site)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"written into site-packages ({how}): {changed[:10]}"
    check_cache_is_the_users(both_backends_ran(run, venv), env)
    assert info.returncode == 0, info.stderr[-3000:]
    assert f"cache={expected_user_cache(env)}" in info.stdout
    assert "no writable folder" not in run.stderr + info.stderr  # the cache was on disk


@needs_build_tools
def test_uninstall_leaves_nothing_of_fastlstm_after_both_backends_ran(wheel, tmp_path):
    venv = Venv(tmp_path / "venv", wheel)
    env = user_env(tmp_path)
    out = both_backends_ran(venv.run_python(USE_BOTH_BACKENDS, env=env, cwd=tmp_path), venv)
    version = subprocess.run([str(venv.scripts / "fastlstm"), "--version"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert version.returncode == 0 and version.stdout.startswith("fastlstm "), version.stderr
    venv.pip("uninstall", "--yes", "fastlstm")
    left = [p.name for p in venv.site.iterdir() if "fastlstm" in p.name.lower()]
    assert not left, f"left in site-packages after pip uninstall: {left}"
    assert not list(venv.scripts.glob("fastlstm*"))
    check_cache_is_the_users(out, env)  # still there: the user's cache is the user's to clear


def test_sdist_has_every_compiled_source(tmp_path):
    """pip builds from the sdist wherever no wheel fits the machine: it must carry the
    .pyx files, headers and kernel variants (setuptools alone lists only generated C)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    tracked = subprocess.run(["git", "ls-files", "src_cython"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    tree = tmp_path / "tree"
    for name in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.split():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    env = {**os.environ, "FASTLSTM_NO_EXTENSION": "1"}  # listing files needs no compiler
    run = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
                         cwd=tree, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    import tarfile
    (sdist,) = tmp_path.glob("fastlstm-*.tar.gz")
    with tarfile.open(sdist) as tar:
        inside = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert tracked and not set(tracked) - inside, sorted(set(tracked) - inside)
