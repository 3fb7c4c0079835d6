"""help() documents every public class, function and LSTM method (numpy docstring style).

For each one: a summary line; a "Parameters" section naming every parameter of the
signature (self, cls, *args and **kwargs aside) and nothing the signature lacks; a
"Returns" section where the code returns a value and a "Raises" section where it raises
one itself; and help() that is not the inherited "Initialize self" text. Exception and
warning classes need only their docstring.
"""
import ast
import inspect
import pydoc
import re
import textwrap

import pytest

import fastlstm
import fastlstm.data
import fastlstm.keras
import fastlstm.keras.saving
import fastlstm.keras.utils

# Named here as well as discovered below, so that a discovery that finds nothing (or an
# __all__ that lost a name) fails instead of silently checking less.
EXPECTED_FUNCTIONS = {"fastlstm.LSTM", "fastlstm.load", "fastlstm.available_backends",
                      "fastlstm.set_num_threads", "fastlstm.get_num_threads",
                      "fastlstm.show_config", "fastlstm.from_keras", "fastlstm.to_keras",
                      "fastlstm.from_torch", "fastlstm.data.load_lynx"}
EXPECTED_LSTM_METHODS = {"forward", "backward", "train", "eval", "state_dict",
                         "load_state_dict", "save", "from_state_dict"}

# The Keras-style API (fastlstm.keras): its classes and functions, and the public methods
# of Sequential that are checked.
KERAS_NAMES = ("Sequential", "LSTM", "Bidirectional", "Dense", "Dropout", "Embedding",
               "Input", "Adam", "SGD", "RMSprop", "AdamW", "EarlyStopping",
               "ModelCheckpoint", "History", "load_model", "save_model")
KERAS_UTILS = ("set_random_seed", "timeseries_windows", "pad_sequences", "to_categorical")
KERAS_SAVING = ("save_weights", "load_weights")
SEQUENTIAL_METHODS = ("compile", "fit", "evaluate", "predict", "predict_on_batch",
                      "train_on_batch", "test_on_batch", "summary", "get_weights",
                      "set_weights", "save", "reset_states", "add", "build")
EXPECTED_KERAS = ({f"fastlstm.keras.{n}" for n in KERAS_NAMES}
                  | {f"fastlstm.keras.utils.{n}" for n in KERAS_UTILS}
                  | {f"fastlstm.keras.saving.{n}" for n in KERAS_SAVING}
                  | {f"fastlstm.keras.Sequential.{n}" for n in SEQUENTIAL_METHODS})


def _public_lstm_methods():
    """Every public method of fastlstm.LSTM (properties aside), the ones it gains too."""
    return sorted(name for name, value in vars(fastlstm.LSTM).items()
                  if not name.startswith("_")
                  and (inspect.isfunction(value) or isinstance(value, (staticmethod,
                                                                          classmethod))))


def _documented_objects():
    """(qualified name, object) for every class and function the docs promise."""
    public = [(name, getattr(fastlstm, name)) for name in fastlstm.__all__]
    out = [(f"fastlstm.{name}", obj) for name, obj in public
           if inspect.isclass(obj) or inspect.isfunction(obj)]
    out.append(("fastlstm.data.load_lynx", fastlstm.data.load_lynx))
    out += [(f"fastlstm.LSTM.{name}", getattr(fastlstm.LSTM, name))
            for name in _public_lstm_methods()]
    out += _keras_objects()
    return out


def _keras_objects():
    """(qualified name, object) for the fastlstm.keras API the docs promise."""
    out = [(f"fastlstm.keras.{name}", getattr(fastlstm.keras, name)) for name in KERAS_NAMES]
    out += [(f"fastlstm.keras.utils.{name}", getattr(fastlstm.keras.utils, name))
            for name in KERAS_UTILS]
    out += [(f"fastlstm.keras.saving.{name}", getattr(fastlstm.keras.saving, name))
            for name in KERAS_SAVING]
    out += [(f"fastlstm.keras.Sequential.{name}", getattr(fastlstm.keras.Sequential, name))
            for name in SEQUENTIAL_METHODS]
    return [(name, obj) for name, obj in out
            if inspect.isclass(obj) or inspect.isfunction(obj)]


def is_exception(obj):
    """Exception and warning classes take Python's own message argument: only their
    docstring is fastlstm's to write."""
    return inspect.isclass(obj) and issubclass(obj, BaseException)


OBJECTS = _documented_objects()
IDS = [name for name, _ in OBJECTS]
WITH_CODE = [(name, obj) for name, obj in OBJECTS if not is_exception(obj)]


def test_the_checked_list_is_complete():
    names = set(IDS)
    assert EXPECTED_FUNCTIONS <= names, f"not checked: {sorted(EXPECTED_FUNCTIONS - names)}"
    methods = {n.rsplit(".", 1)[1] for n in names if n.startswith("fastlstm.LSTM.")}
    assert EXPECTED_LSTM_METHODS <= methods, \
        f"LSTM methods not checked: {sorted(EXPECTED_LSTM_METHODS - methods)}"
    assert EXPECTED_KERAS <= names, f"not checked: {sorted(EXPECTED_KERAS - names)}"


# --- a small numpy-docstring reader ----------------------------------------------------

def sections(doc):
    """{section title: [its lines]} of a cleaned numpy-style docstring; '' is the text
    before the first section."""
    lines = inspect.cleandoc(doc).splitlines()
    out, title, i = {"": []}, "", 0
    while i < len(lines):
        if (lines[i].strip() and i + 1 < len(lines)
                and re.fullmatch(r"-{3,}", lines[i + 1].strip())):
            title = lines[i].strip()
            out[title] = []
            i += 2
            continue
        out[title].append(lines[i])
        i += 1
    return out


def documented_parameters(doc):
    """Names in the Parameters section: its unindented 'name : type' / 'a, b : type' lines."""
    names = []
    for line in sections(doc).get("Parameters", []):
        if not line or line[0].isspace():
            continue
        names += [n.strip().lstrip("*") for n in line.split(":", 1)[0].split(",")]
    return names


def signature_parameters(obj):
    """Names a caller passes: self, cls, *args and **kwargs aside."""
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in inspect.signature(obj).parameters.values()
            if p.kind not in skip and p.name not in ("self", "cls")]


def variadic_parameters(obj):
    return [p.name for p in inspect.signature(obj).parameters.values()
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def code_of(obj):
    """The function whose body is checked for return and raise: __init__ for a class."""
    obj = obj.__init__ if inspect.isclass(obj) else obj
    return getattr(obj, "__func__", obj)


def returns_and_raises(func):
    """(returns a value, raises itself) from the function's own body, nested defs aside."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    (fdef,) = tree.body
    returns = raises = False
    todo = list(fdef.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            returns = True
        if isinstance(node, ast.Raise) and node.exc is not None:
            raises = True
        todo.extend(ast.iter_child_nodes(node))
    return returns, raises


# --- the checks ------------------------------------------------------------------------

@pytest.mark.parametrize("name,obj", OBJECTS, ids=IDS)
def test_docstring_has_a_summary_and_names_every_parameter(name, obj):
    doc = obj.__doc__  # a class's own docstring, where numpy style documents __init__
    assert doc and doc.strip(), f"{name} has no docstring"
    summary = inspect.cleandoc(doc).splitlines()[0].strip()
    assert summary, f"{name}: the docstring's first line (the summary) is empty"
    if is_exception(obj):
        return
    wanted = signature_parameters(obj)
    documented = documented_parameters(doc)
    if wanted:
        assert "Parameters" in sections(doc), \
            f"{name}{inspect.signature(obj)}: the docstring has no 'Parameters' section"
    for param in wanted:
        assert param in documented, \
            f"{name}: parameter {param!r} is missing from the docstring's Parameters section"
    extra = set(documented) - set(wanted) - set(variadic_parameters(obj))
    assert not extra, f"{name}: the Parameters section documents {sorted(extra)}, which " \
                      f"the signature {inspect.signature(obj)} does not have"


@pytest.mark.parametrize("name,obj", WITH_CODE, ids=[name for name, _ in WITH_CODE])
def test_docstring_says_what_comes_back_and_what_is_raised(name, obj):
    returns, raises = returns_and_raises(code_of(obj))
    found = sections(obj.__doc__ or "")
    if returns and not inspect.isclass(obj):
        assert "Returns" in found, f"{name} returns a value: its docstring has no 'Returns'"
    if raises:
        assert "Raises" in found, f"{name} raises errors itself: its docstring has no 'Raises'"


@pytest.mark.parametrize("name,obj", OBJECTS, ids=IDS)
def test_help_shows_the_docstring_not_the_inherited_default(name, obj):
    text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
    assert is_exception(obj) or "Initialize self" not in text, \
        f"help({name}) shows the inherited 'Initialize self.  See help(type(self))' text " \
        "for __init__: give __init__ a docstring of its own (its arguments are documented " \
        "in the class docstring's Parameters section)"
    summary = inspect.cleandoc(obj.__doc__ or "").splitlines()[:1]
    assert summary and summary[0] in text, f"help({name}) does not show its summary line"


def test_the_reader_finds_parameters_and_sections():
    """The checks above are only as good as this reader: it must see what numpydoc sees."""
    doc = """Summary.

    Parameters
    ----------
    x : ndarray, shape (T, B, I)
        The input; a line of description: with a colon.
    h0, c0 : ndarray
    flag
        A bare name.
    **kwargs
        Passed on.

    Returns
    -------
    y : ndarray
    """
    assert documented_parameters(doc) == ["x", "h0", "c0", "flag", "kwargs"]
    assert set(sections(doc)) == {"", "Parameters", "Returns"}
    assert documented_parameters("Summary only.") == []

    def f(a, *args, b=1, **kw):
        def inner():
            raise ValueError
        return None
    assert signature_parameters(f) == ["a", "b"] and variadic_parameters(f) == ["args", "kw"]
    assert returns_and_raises(f) == (False, False)  # the nested raise is inner's

    def g(a):
        if a:
            raise ValueError("a")
        return a
    assert returns_and_raises(g) == (True, True)
