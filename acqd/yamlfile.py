"""Load a YAML file and validate it with a pydantic model; errors name file, line and field."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from acqd.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            _lines(value, (*loc, k), out)
            out[(*loc, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), out)


def _duplicate(node: yaml.Node) -> tuple[str, int, int] | None:
    """The first key that a mapping of the document has twice: (key, its first line, its second)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                line = key.start_mark.line + 1
                if key.value in seen:
                    return key.value, seen[key.value], line
                seen[key.value] = line
            found = _duplicate(value)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate(item)
            if found is not None:
                return found
    return None


def read_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """The document and a map from each key path to its line (1-based)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{line} YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        twice = _duplicate(node)
        if twice is not None:  # YAML keeps the last one: a second `watch:` would hide the first's roots
            key, first, second = twice
            raise ConfigError(
                f"{path}:{second}: {key!r} is given twice in one section (first on line {first}); "
                "only one would count: merge them into one"
            )
        _lines(node, (), lines)
    return data, lines


#: a model check's error that starts with this and a dotted location ("@watch.0.placement.tier: ...",
#: relative to the model that checks) is reported at that key's line, not at the model's first line
AT = "@"


def _section(model: Any, loc: Loc) -> Any:
    """The model class of the section at `loc` in a document of `model` (None if not a model): list
    items and dict values taken through, Optional and Annotated unwrapped."""
    t: Any = model
    for part in loc:
        t = _inner(t, isinstance(part, int))
        if isinstance(part, int):
            continue
        if isinstance(t, type) and issubclass(t, BaseModel):
            fields = t.model_fields
            name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
            if name is None:
                return None
            t = fields[name].annotation
        elif typing.get_origin(t) is dict:
            t = typing.get_args(t)[1]
        else:
            return None
    t = _inner(t, False)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _inner(t: Any, item: bool) -> Any:
    """`t` with Optional/Union-with-None and Annotated taken off; its item type for a list or tuple
    (`item`: a list index comes next in the location)."""
    for _ in range(8):
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin is typing.Annotated:
            t = args[0]
        elif origin in (typing.Union, types.UnionType) and args:
            rest = [a for a in args if a is not type(None)]
            models = [a for a in rest if isinstance(a, type) and issubclass(a, BaseModel)]
            t = models[0] if models else rest[0]
        elif item and origin in (list, tuple) and args:
            t = args[0]
            item = False
        else:
            return t
    return t


def _known_keys(model: Any, loc: Loc) -> str:
    """`; the keys here: a, b, c` for the section at `loc`, or "" if it cannot be told."""
    section = _section(model, loc) if model is not None else None
    if section is None:
        return ""
    keys = sorted(f.alias or n for n, f in section.model_fields.items())
    return "; the keys here: " + ", ".join(keys) if keys else ""


def format_validation_error(path: Path, exc: ValidationError, lines: dict[Loc, int], model: Any = None) -> str:
    msgs = []
    errors = exc.errors()
    for err in errors:
        loc: Loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(
            len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors
        ):
            continue  # its items' errors said it: one left out is not a second problem

        said = wording(err)
        if err["type"] == "extra_forbidden":  # the keys this section has, by name (a typo is seen at once)
            said = "unknown key (typo?)" + (_known_keys(model, loc[:-1]) or said.partition("?)")[2])
        if said.startswith(AT):  # a check across sections naming where it found the problem
            where, _, said = said[len(AT) :].partition(": ")
            loc = loc + tuple(int(p) if p.isdigit() else p for p in where.split("."))
        probe = loc
        while probe and probe not in lines:
            probe = probe[:-1]
        line = lines.get(probe, 1)
        field = ".".join(str(p) for p in loc) or "(top level)"
        msgs.append(f"{path}:{line}: {field}: {said}")
    return "\n".join(msgs)


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def wording(err: Any) -> str:
    """What is wrong, in the words of a YAML file (lists, sections, whole numbers), not pydantic's
    (tuples, models, 'Value error, ...'), with the value given where it helps."""
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        return "unknown key (typo?); see the documented keys for this section"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "required, and missing here"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"should be a whole number, not {_shown(given)}"
    if kind in ("float_parsing", "float_type"):
        return f"should be a number, not {_shown(given)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"should be true or false, not {_shown(given)}"
    if kind == "string_type":
        return f"should be text, not {_shown(given)}"
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"):
        return f"should be a list, e.g. [a, b], not {_shown(given)}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return f"should be a section of keys (key: value), not {_shown(given)}"
    if kind in ("literal_error", "enum"):
        said = f"should be {ctx.get('expected', 'one of the documented values')}, not {_shown(given)}"
        if isinstance(given, bool):  # YAML 1.1 reads yes/no/on/off as true/false
            said += " (YAML reads yes, no, on and off as true or false)"
        return said
    if kind in ("too_long", "too_short") and isinstance(given, list | tuple):
        lo, hi = ctx.get("min_length"), ctx.get("max_length")
        n = len(given)
        want = f"{lo}" if lo is not None and lo == hi else f"at most {hi}" if kind == "too_long" else f"at least {lo}"
        return f"should have {want} item(s), not {n}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "should not be empty"
    msg = str(err["msg"])
    return "should" + msg[len("Input should") :] if msg.startswith("Input should") else msg


def load_model(path: Path, model: type[M], context: dict[str, Any] | None = None) -> M:
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}:1: the file is empty")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, lines, model)) from None
