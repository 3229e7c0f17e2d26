"""Build and install pyxenon's engine: Unicorn 2.1.4 with pyxenon's
patch (engine/README.md), x86 only, into the running Python's environment.

    python engine/build.py            # build, install, say what was installed
    python engine/build.py --check    # which engine the environment has

Steps: the unicorn 2.1.4 source distribution from the package index, the
patch applied to its C sources (git apply), libunicorn built with CMake
and Ninja (pip-installed when missing), placed in the distribution's
prebuilt/ folder (its setup.py then uses it instead of building all
architectures), and the distribution installed over the unicorn wheel.
pyxenon's C core needs no rebuild: it calls only Unicorn's public API, and
`import unicorn` loads the new library.  See engine/README.md.
"""
import argparse
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

VERSION = "2.1.4"
HERE = pathlib.Path(__file__).resolve().parent
PATCH = HERE / f"unicorn-{VERSION}-pyxenon.patch"
RECORD = "pyxenon-engine.json"      # written beside the installed library


class BuildError(Exception):
    pass


def run(argv, cwd=None):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise BuildError(f"{' '.join(map(str, argv[:3]))}... failed:\n  " + "\n  ".join(tail))
    return done.stdout


def pip(*args, cwd=None):
    return run([sys.executable, "-m", "pip", "-q", *args], cwd=cwd)


def tool(name):
    """cmake or ninja: on PATH, else from the package index into this environment."""
    found = shutil.which(name) or shutil.which(name, path=str(pathlib.Path(sys.executable).parent))
    if found:
        return found
    pip("install", name)
    found = shutil.which(name, path=str(pathlib.Path(sys.executable).parent))
    if not found:
        raise BuildError(f"{name}: installed, but not found beside {sys.executable}")
    return found


def fetch_source(work):
    pip("download", "--no-binary", ":all:", "--no-deps",
        f"unicorn=={VERSION}", "-d", str(work))
    archive = next(work.glob(f"unicorn-{VERSION}.tar.gz"), None)
    if archive is None:
        raise BuildError(f"no unicorn-{VERSION}.tar.gz from the package index")
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(work, filter="data")
        except TypeError:          # Python before 3.11.4 / 3.10.12: no filters
            tar.extractall(work)
    return work / f"unicorn-{VERSION}"


def build_library(dist, work):
    src, build = dist / "src", work / "build"
    run(["git", "apply", "-p1", str(PATCH)], cwd=src)
    run([tool("cmake"), "-S", str(src), "-B", str(build), "-G", "Ninja",
         f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}", "-DCMAKE_BUILD_TYPE=Release",
         "-DUNICORN_ARCH=x86", "-DUNICORN_BUILD_TESTS=OFF"])
    run([tool("cmake"), "--build", str(build)])
    prebuilt = dist / "prebuilt"
    prebuilt.mkdir(exist_ok=True)
    for name in ("libunicorn.so.2", "libunicorn.a"):
        shutil.copy(build / name, prebuilt / name)
    return prebuilt / "libunicorn.so.2"


def installed_library():
    """The libunicorn.so.2 that `import unicorn` loads here, or None."""
    import importlib.util

    spec = importlib.util.find_spec("unicorn")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = pathlib.Path(list(spec.submodule_search_locations)[0]) / "lib" / "libunicorn.so.2"
    return lib if lib.exists() else None


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe():
    lib = installed_library()
    if lib is None:
        return "no unicorn installed"
    record = lib.parent / RECORD
    if record.exists() and json.loads(record.read_text()).get("sha256") == sha256(lib):
        return f"pyxenon's engine (unicorn {VERSION} + {PATCH.name}): {lib}"
    return f"the stock unicorn wheel: {lib}"


def install():
    with tempfile.TemporaryDirectory(prefix="pyxenon-engine-") as tmp:
        work = pathlib.Path(tmp)
        dist = fetch_source(work)
        built = build_library(dist, work)
        pip("install", "--no-deps", "--force-reinstall", str(dist))
        digest = sha256(built)
    lib = installed_library()
    if lib is None or sha256(lib) != digest:
        raise BuildError("the installed unicorn does not carry the library just built")
    (lib.parent / RECORD).write_text(json.dumps({"patch": PATCH.name, "sha256": digest}) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="say which engine is installed")
    args = parser.parse_args(argv)
    try:
        if not args.check:
            install()
    except (BuildError, OSError) as err:
        print(f"engine/build.py: {err}", file=sys.stderr)
        return 1
    print(f"engine/build.py: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
