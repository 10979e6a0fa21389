"""Self-check verdicts a submission cannot forge: decided outside any kernel it ran in. Lab 00.

:func:`decide` reads a submitted notebook's code cells **as source** (never its outputs) and keeps
their top-level imports, ``def`` and ``class`` statements (and ``name = lambda ...``); the last
definition of a name wins, cells that do not parse are skipped. The teacher's checks
(``faceattr_lab.course.checks``) then run **in the grading process** on a :class:`Proxy` in place
of each student object: a call's arguments are pickled to a sandbox child process, which ran the
extracted definitions once and runs the student's function on them, and its result (or the
exception's type and message) comes back. The check's own comparisons never run beside student
code, so the code can influence only the values it returns, which is what is checked: a
notebook that monkeypatches ``fl.checks``, prints "pass" or writes ``results.json`` changes
nothing.

* A result is unpickled with an allow-list (plain Python values, numpy arrays, Keras models
  rebuilt with Keras' ``safe_mode``), so a crafted pickle cannot run code in the grader.
* Arguments the student's function changes in place (a list, dict, set or numpy array) are
  copied back, so a check that tests "the base dict is unchanged" still sees the change.
* Each call has a timeout; a function that loops fails its check with "timed out", and the
  sandbox is killed (a fresh one serves the next check).
* The sandbox runs in a temporary folder, in grading mode, with an audit hook
  (:func:`install_guard`) refusing file writes outside that folder and new processes.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SANDBOX_TIMEOUT = 120.0


# ---- reading a submission -------------------------------------------------------------------

def lab_checks(lab) -> list[tuple[str, str]]:
    """The self-checks a teacher lab calls, in order: ``[(check name, argument source)]``. Lab 00.

    ``fl.checks.mae_to_years(mae_to_years)`` gives ``("mae_to_years", "mae_to_years")``.
    """
    import nbformat

    from faceattr_lab.course import runner

    nb = nbformat.read(runner.find_lab(lab), as_version=4)
    calls = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_without_magics(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and ast.unparse(node.func.value) == "fl.checks" and node.args):
                calls.append((node.func.attr, ast.unparse(node.args[0])))
    return calls


def _without_magics(source: str) -> str:
    """A cell's source with IPython magics and shell lines blanked, so ``ast`` can parse it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def extract_definitions(notebook) -> str:
    """The importable part of a notebook's code: its imports, functions and classes. Lab 00.

    ``notebook`` is a path or an ``nbformat`` notebook. Only code cells' sources are read;
    IPython magics are blanked and a cell that does not parse is skipped. Every import is kept
    (in order), then each ``def`` / ``class`` / ``name = lambda`` in the order of its last
    definition (a later definition replaces an earlier one).
    """
    import nbformat

    nb = notebook if hasattr(notebook, "cells") else nbformat.read(str(notebook), as_version=4)
    imports: list[str] = []
    definitions: dict[str, str] = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_without_magics(cell.source))
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                    imports.append(ast.unparse(node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                definitions.pop(node.name, None)
                definitions[node.name] = ast.unparse(node)
            elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda)
                  and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                definitions.pop(node.targets[0].id, None)
                definitions[node.targets[0].id] = ast.unparse(node)
    return "\n\n".join([*imports, *definitions.values()]) + "\n"


# ---- the guard (also installed in grading kernels) ------------------------------------------

GUARD_ROOTS_ENV = "FACEATTR_LAB_GUARD_ROOTS"


def install_guard(roots=None, allow_processes: bool = False) -> None:
    """Refuse file writes outside ``roots`` (and the temp folder) and new processes. Lab 00.

    A :func:`sys.addaudithook` hook: Python code cannot remove it. ``roots`` default to the
    ``$FACEATTR_LAB_GUARD_ROOTS`` folders (``os.pathsep``-separated). Writes go through
    ``open`` (any mode but read), ``os.remove``/``rename``/``mkdir``/``rmdir``/``chmod``/
    ``utime``/``symlink``/``link``/``truncate`` and ``shutil`` operations; ``subprocess``,
    ``os.system``, ``os.exec*``, ``os.fork``, ``os.spawn*`` and ``os.posix_spawn`` raise
    ``PermissionError``. It does not stop native code (ctypes, C extensions) from writing.
    """
    if roots is None:
        roots = [r for r in os.environ.get(GUARD_ROOTS_ENV, "").split(os.pathsep) if r]
    allowed = [os.path.realpath(r) for r in [*roots, tempfile.gettempdir(), os.devnull]]
    processes = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                 "os.fork", "os.forkpty", "pty.spawn"}
    paths_written = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown",
                     "os.utime", "os.symlink", "os.link", "os.truncate", "shutil.copyfile",
                     "shutil.copytree", "shutil.move", "shutil.rmtree", "os.removexattr",
                     "os.setxattr"}
    realpath, fspath, sep = os.path.realpath, os.fspath, os.sep

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor: its opening was audited
        try:
            full = realpath(fspath(path))
        except (TypeError, ValueError):
            return False
        return any(full == root or full.startswith(root.rstrip(sep) + sep) for root in allowed)

    def hook(event, args):
        if event in processes and not allow_processes:
            raise PermissionError(f"grading: {event} is not allowed while grading")
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT
                                                    | os.O_TRUNC | os.O_APPEND))
            if writing and path is not None and not inside(path):
                raise PermissionError(f"grading: writing {path!r} outside the submission's "
                                      "folder is not allowed")
        elif event in paths_written:
            for path in args[:2] if event in ("os.rename", "os.symlink", "os.link",
                                              "shutil.copyfile", "shutil.copytree",
                                              "shutil.move") else args[:1]:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                    raise PermissionError(f"grading: {event} on {path!r} outside the "
                                          "submission's folder is not allowed")

    sys.addaudithook(hook)


# ---- safe unpickling of what student code returns -------------------------------------------

_SAFE_BUILTINS = {"set", "frozenset", "complex", "slice", "range", "bytearray", "bytes", "list",
                  "dict", "tuple", "int", "float", "str", "bool", "object"}
_SAFE = {("collections", "OrderedDict"), ("collections", "deque"), ("_io", "BytesIO"),
         ("copyreg", "_reconstructor"), ("datetime", "datetime"), ("datetime", "date"),
         ("datetime", "timedelta"), ("fractions", "Fraction"), ("decimal", "Decimal")}
_KERAS_MODELS = {("keras.src.models.functional", "Functional"),
                 ("keras.src.models.sequential", "Sequential"), ("keras.src.models.model", "Model")}


# the kit's modules that register Keras layers and losses (needed to load a model using them)
_KERAS_MODULES = ("faceattr_lab.models.backbones", "faceattr_lab.models.heads",
                  "faceattr_lab.models.fusion", "faceattr_lab.models.levi_hassner_cnn",
                  "faceattr_lab.losses")


def _import_kit_layers() -> None:
    import importlib

    for module in _KERAS_MODULES:
        importlib.import_module(module)


def _load_keras_model(buffer):
    """A Keras model from the bytes ``Model.__reduce__`` wrote, in Keras' safe mode."""
    import keras.src.saving.saving_lib as saving_lib

    _import_kit_layers()

    return saving_lib._load_model_from_fileobj(buffer, custom_objects=None, compile=False,
                                               safe_mode=True)


def _safe_getattr(owner, name):
    if name == "_unpickle_model" and isinstance(owner, type):
        return _load_keras_model
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not allowed in a result")


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "builtins" and name == "getattr":
            return _safe_getattr
        if (module == "builtins" and name in _SAFE_BUILTINS) or (module, name) in _SAFE \
                or (module, name) in _KERAS_MODELS:
            return super().find_class(module, name)
        if module.split(".")[0] == "numpy" and (
                name in ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer")
                or name.endswith("DType") or module in ("numpy", "numpy.dtypes")):
            value = super().find_class(module, name)
            if isinstance(value, type) or name in ("_reconstruct", "scalar", "_frombuffer"):
                return value
        raise pickle.UnpicklingError(f"a result may not hold {module}.{name}; return plain "
                                     "Python values, numpy arrays or Keras models")


def safe_loads(data: bytes):
    """Unpickle what student code sent, refusing anything but plain data. Lab 00."""
    return _SafeUnpickler(io.BytesIO(data)).load()


# ---- the sandbox child ----------------------------------------------------------------------

class StudentError(Exception):
    """An exception the student's code raised in the sandbox (its type name and message)."""

    def __repr__(self):
        return f"{type(self).__name__}({str(self)!r})"


class SandboxTimeout(TimeoutError):
    """A student's function ran past the per-call timeout (the sandbox was killed)."""


def _student_error(name: str, message: str) -> StudentError:
    safe = name if name.isidentifier() else "Error"
    return type(safe, (StudentError,), {"__module__": "student"})(message)


def _serve(request_fd: int, response_fd: int, folder: str) -> None:
    """The sandbox's loop: exec the definitions once, then answer calls until told to stop."""
    from multiprocessing.connection import Connection

    requests, responses = Connection(request_fd, writable=False), Connection(response_fd,
                                                                             readable=False)
    os.chdir(folder)
    source = requests.recv_bytes().decode()
    install_guard([folder])
    namespace = {"__name__": "__student__", "__builtins__": builtins}
    import __future__
    flags = __future__.annotations.compiler_flag
    for node in ast.parse(source).body:  # each statement alone: one bad import costs its own
        try:
            exec(compile(ast.Module([node], []), "<submission>", "exec", flags=flags,
                         dont_inherit=True), namespace)
        except BaseException:  # noqa: BLE001 - a broken definition fails only its own check
            pass
    responses.send_bytes(pickle.dumps(("ready", None)))
    while True:
        try:
            request = requests.recv_bytes()
        except EOFError:
            return
        try:
            if b"keras" in request:
                _import_kit_layers()
            name, args, kwargs = pickle.loads(request)
            if name not in namespace:
                raise NameError(f"name {name!r} is not defined in the submission (define it "
                                "with def at the top level of a cell)")
            result = namespace[name](*args, **kwargs)
            reply = ("ok", pickle.dumps(result), pickle.dumps((args, kwargs)))
        except BaseException as error:  # noqa: BLE001 - sent back as its type and message
            reply = ("raised", type(error).__name__, str(error)[:2000])
        try:
            responses.send_bytes(pickle.dumps(reply))
        except Exception as error:  # noqa: BLE001 - e.g. a result that cannot be pickled
            responses.send_bytes(pickle.dumps(
                ("raised", "PicklingError", f"the result cannot be sent back: {error}")))


class Sandbox:
    """A child process holding one submission's definitions; call its functions by name. Lab 00."""

    def __init__(self, source: str, timeout: float = SANDBOX_TIMEOUT, env: dict | None = None):
        from multiprocessing.connection import Connection

        self.timeout = float(timeout)
        self.folder = tempfile.mkdtemp(prefix="faceattr-sandbox-")
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        from faceattr_lab.course import checks, runner

        child_env = runner.kernel_environment({checks.GRADING_ENV: "1", **(env or {})})
        child_env["CUDA_VISIBLE_DEVICES"] = child_env.get("CUDA_VISIBLE_DEVICES", "")
        child_env["TMPDIR"] = self.folder  # the guard allows the temp folder: make it this one
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from faceattr_lab.course.verdicts import _serve; "
             f"_serve({request_r}, {response_w}, sys.argv[1])", self.folder],
            pass_fds=(request_r, response_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("FACEATTR_LAB_SANDBOX_DEBUG") else subprocess.DEVNULL,
            env=child_env, cwd=self.folder, start_new_session=True)
        os.close(request_r)
        os.close(response_w)
        self._requests = Connection(request_w, readable=False)
        self._responses = Connection(response_r, writable=False)
        self.dead: str | None = None
        self._requests.send_bytes(source.encode())
        try:
            self._receive("loading the submission's definitions")
        except SandboxTimeout:
            pass

    def _receive(self, what: str):
        if not self._responses.poll(self.timeout):
            self.close()
            self.dead = f"{what} timed out after {self.timeout:g} s"
            raise SandboxTimeout(self.dead)
        try:
            return safe_loads(self._responses.recv_bytes())
        except (EOFError, OSError):
            self.close()
            self.dead = f"the sandbox died while {what}"
            raise StudentError(self.dead) from None

    def call(self, name: str, args=(), kwargs=None):
        """Run the student's ``name(*args, **kwargs)`` in the sandbox; its result or error."""
        if self.dead:
            raise SandboxTimeout(f"{name}: {self.dead}") if "timed out" in self.dead \
                else StudentError(f"{name}: {self.dead}")
        kwargs = dict(kwargs or {})
        self._requests.send_bytes(pickle.dumps((name, tuple(args), kwargs)))
        reply = self._receive(f"{name}(...)")
        if reply[0] == "raised":
            raise _student_error(reply[1], reply[2])
        result = safe_loads(reply[1])
        new_args, new_kwargs = safe_loads(reply[2])
        for old, new in [*zip(args, new_args), *((kwargs[k], new_kwargs.get(k)) for k in kwargs)]:
            _copy_back(old, new)
        return result

    def close(self) -> None:
        """Kill the child (and anything it started) and remove its folder."""
        import shutil

        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, 9)
            with contextlib.suppress(Exception):
                self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(5)
        for connection in (self._requests, self._responses):
            with contextlib.suppress(Exception):
                connection.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _copy_back(old, new) -> None:
    """Mirror an in-place change the student's function made to an argument."""
    if type(old) is not type(new):
        return
    with contextlib.suppress(Exception):
        if isinstance(old, list):
            old[:] = new
        elif isinstance(old, (dict, set)):
            old.clear()
            old.update(new)
        elif type(old).__name__ == "ndarray" and old.shape == new.shape and old.flags.writeable:
            old[...] = new


class Proxy:
    """Stands for a student's function in the grading process; calls run in the sandbox."""

    def __init__(self, sandbox: Sandbox, name: str):
        self._sandbox, self._name = sandbox, name

    def __call__(self, *args, **kwargs):
        return self._sandbox.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<the submission's {self._name}>"


# ---- the verdicts ---------------------------------------------------------------------------

def decide(teacher_lab, notebook, timeout: float = 120.0) -> dict[str, dict]:
    """Every teacher check's verdict on a submission, decided outside its kernel. Lab 00.

    Returns ``{check name: {"passed": bool, "message": str}}`` for every check
    ``grader.lab_checks(teacher_lab)`` lists. ``notebook`` is the submission (a path or an
    ``nbformat`` notebook); only its code cells' sources are read. ``timeout`` (seconds) caps
    each call of a student function, and the loading of its definitions.
    """
    from faceattr_lab.course import checks, runner

    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}; pass a number of seconds above 0, e.g. 120.")
    calls = lab_checks(teacher_lab)
    if not hasattr(notebook, "cells") and not Path(notebook).is_file():
        notebook = runner.find_lab(notebook)  # "03": a teacher lab, as release checks it
    source = extract_definitions(notebook)
    verdicts: dict[str, dict] = {}
    sandbox = None
    try:
        for name, argument in calls:
            if sandbox is None or sandbox.dead:
                if sandbox is not None:
                    sandbox.close()
                sandbox = Sandbox(source, timeout)
            output = io.StringIO()
            try:
                names = {n.id for n in ast.walk(ast.parse(argument, mode="eval"))
                         if isinstance(n, ast.Name)}
                value = eval(argument, {n: Proxy(sandbox, n) for n in names})  # noqa: S307
                with contextlib.redirect_stdout(output):
                    passed = bool(getattr(checks, name)(value, strict=False))
                message = output.getvalue().strip()
            except Exception as exc:  # noqa: BLE001 - a student's error fails that check only
                passed, message = False, f"{name}: {type(exc).__name__}: {exc}"
            if sandbox.dead and "timed out" in sandbox.dead and "timed out" not in message:
                message = f"{message} ({sandbox.dead})".strip()
            verdicts[name] = {"passed": passed, "message": message}
    finally:
        if sandbox is not None:
            sandbox.close()
    return verdicts


__all__ = ["SANDBOX_TIMEOUT", "GUARD_ROOTS_ENV", "extract_definitions", "install_guard",
           "lab_checks", "safe_loads", "StudentError", "SandboxTimeout", "Sandbox", "Proxy",
           "decide"]
