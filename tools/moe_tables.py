"""The router and balance-loss tables of the engine, read for the PyTorch reference.

Parses models/routers/routers.def (MOE_ROUTER lines), models/routers/options.def
(MOE_ROUTING_OPTION lines) and models/balance/losses.def (MOE_BALANCE_LOSS lines) into ROUTER_TABLE,
OPTION_TABLE and LOSS_TABLE (key -> rule, in the tables' order); LOSS_NAMES is the engine's log order. Used by torch_reference.py and reference_suite.py.
"""
import os
import re
from collections import namedtuple

MODELS_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
ROUTERS_DEF = os.path.join(MODELS_DIR, "routers", "routers.def")
LOSSES_DEF = os.path.join(MODELS_DIR, "balance", "losses.def")
OPTIONS_DEF = os.path.join(MODELS_DIR, "routers", "options.def")

RouterRule = namedtuple("RouterRule", "id key experts_per_token capacity weights options summary")
OptionRule = namedtuple("OptionRule", "key type default scope")
LossRule = namedtuple("LossRule", "key needs summary")

_STRING = r'"(?:[^"\\\n]|\\.)*"'
_SUMMARY = rf"((?:{_STRING}\s*)+)"  # adjacent C string literals concatenate
_ROUTER_LINE = re.compile(rf"MOE_ROUTER\s*\(\s*(\w+)\s*,\s*({_STRING})\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*,"
                          rf"\s*({_STRING})\s*,\s*{_SUMMARY}\)")
_OPTION_LINE = re.compile(rf"MOE_ROUTING_OPTION\s*\(\s*(\w+)\s*,\s*(\w+)\s*,\s*([\w.:+-]+)\s*,\s*(\w+)\s*,"
                          rf"\s*{_SUMMARY},\s*{_SUMMARY},\s*{_SUMMARY}\)")
_LOSS_LINE = re.compile(rf"MOE_BALANCE_LOSS\s*\(\s*(\w+)\s*,\s*(\w+)\s*,\s*{_SUMMARY}\)")
_ROUTER_VALUES = {"experts_per_token": ("top_k", "one"), "capacity": ("optional", "required"),
                  "weights": ("gate", "gate_noise", "none")}
_LOSS_NEEDS = ("scores", "logits", "noise")


def _c_string(literals):  # the text of one or more adjacent C string literals (escapes kept as written)
    return "".join(lit[1:-1] for lit in re.findall(_STRING, literals))


def _read_table(path, macro, pattern):
    """The macro's entries of a .def file, in order, comments left out; every entry must parse."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise SystemExit(f"torch_reference: cannot read {path} ({e.strerror}); it declares the {macro} entries")
    # Comments out (their text shows the macro's shape), strings kept.
    text = re.sub(rf"{_STRING}|//[^\n]*|/\*.*?\*/", lambda m: m.group(0) if m.group(0)[0] == '"' else " ", text,
                  flags=re.S)
    entries = [m.groups() for m in pattern.finditer(text)]
    if len(entries) != len(re.findall(rf"\b{macro}\s*\(", text)):
        raise SystemExit(f"torch_reference: {path}: a {macro}(...) line this script cannot parse")
    if not entries:
        raise SystemExit(f"torch_reference: {path}: no {macro}(...) line")
    return entries


def read_router_table(path=ROUTERS_DEF):
    """key -> RouterRule, in the table's order."""
    out = {}
    for id_, key, per_token, capacity, weights, options, summary in _read_table(path, "MOE_ROUTER", _ROUTER_LINE):
        rule = RouterRule(id_, _c_string(key), per_token, capacity, weights, _c_string(options).split(),
                          _c_string(summary))
        for field, allowed in _ROUTER_VALUES.items():
            if getattr(rule, field) not in allowed:
                raise SystemExit(f"torch_reference: {path}: router {rule.key}: {field} is {getattr(rule, field)}, "
                                 f"not one of {', '.join(allowed)}")
        if rule.key in out:
            raise SystemExit(f"torch_reference: {path}: router {rule.key} declared twice")
        out[rule.key] = rule
    return out


def read_loss_table(path=LOSSES_DEF):
    """key -> LossRule, in the table's order (the engine's log order)."""
    out = {}
    for key, needs, summary in _read_table(path, "MOE_BALANCE_LOSS", _LOSS_LINE):
        if needs not in _LOSS_NEEDS:
            raise SystemExit(f"torch_reference: {path}: loss {key}: needs is {needs}, not one of "
                             f"{', '.join(_LOSS_NEEDS)}")
        if key in out:
            raise SystemExit(f"torch_reference: {path}: loss {key} declared twice")
        out[key] = LossRule(key, needs, _c_string(summary))
    return out


def _option_default(type_, text):
    """A C++ default of options.def as the YAML value: 1.0, 20, false, SoftmaxOrder::before_topk."""
    if type_ == "bool":
        return text == "true"
    if type_ == "int":
        return int(text)
    if type_ == "double":
        return float(text)
    return text.split("::")[-1]  # an enum: its YAML name


def read_option_table(path=OPTIONS_DEF):
    """key -> OptionRule (its YAML default), in the table's order."""
    out = {}
    for key, type_, default, scope, *_ in _read_table(path, "MOE_ROUTING_OPTION", _OPTION_LINE):
        if scope not in ("every", "listed"):
            raise SystemExit(f"torch_reference: {path}: option {key}: scope is {scope}, not every or listed")
        out[key] = OptionRule(key, type_, _option_default(type_, default), scope)
    return out


ROUTER_TABLE = read_router_table()
OPTION_TABLE = read_option_table()
LOSS_TABLE = read_loss_table()
LOSS_NAMES = list(LOSS_TABLE)  # the engine's log order


def router_takes(router, option):
    """Whether a router takes a routing option: every `every` option, the `listed` ones it names."""
    return OPTION_TABLE[option].scope == "every" or option in ROUTER_TABLE[router].options


def router_provides(router):
    """What a router gives the losses: scores always, logits unless it has no weights, noise with gate_noise."""
    weights = ROUTER_TABLE[router].weights
    return {"scores"} | ({"logits"} if weights != "none" else set()) | ({"noise"} if weights == "gate_noise" else set())
