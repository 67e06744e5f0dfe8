"""The search-space language and the spaces the zoo searches.

A space is {name: Param}: a choice among values, an on/off switch or a float
range (log or linear), optionally active only when a parent takes some values
(keras-tuner's conditional scope). `search_space(family, scale)` joins the
options every family shares (`COMMON_SPACE`: optimizer, learning rate,
momentum, schedule, activation, initializer, batch norm, L2, dropout) with the
family's own (`zoo.get_family(name).search_space`, beside its models).
`refine_space` narrows a space around the best trials so far (coarse to fine;
Bergstra & Bengio 2012 sample log ranges, as here).
"""

import dataclasses
import math

import zoo
from zoo import resolve

SCALES = ("full", "tiny")  # tiny: the registered test_* variants, for smoke tests and CI
REFINE_TOP = 3             # trials whose values bound a refined range
LOG_MARGIN = 2.0           # a refined log range reaches a factor 2 beyond the top values
LINEAR_MARGIN = 0.1        # a refined linear range reaches 10% of the old range beyond them


def families():
    """The searchable families, in registration order."""
    return tuple(zoo.list_families())


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter: a choice among `values`, a boolean, or a float range.

    Args:
        kind: "choice", "bool" or "float".
        values: the choices (or the boolean values still allowed).
        low, high: the float range; `log` samples it on a log scale.
        when: (parent name, parent values): the parameter is active only when
            the parent takes one of those values (keras-tuner conditional scope).
    """

    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    when: tuple | None = None

    def to_json(self):
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d):
        d = dict(d)
        d["values"] = tuple(d.get("values", ()))
        if d.get("when"):
            d["when"] = (d["when"][0], tuple(d["when"][1]))
        return cls(**d)


def choice(*values, when=None):
    return Param("choice", tuple(values), when=when)


def boolean(when=None):
    return Param("bool", (True, False), when=when)


def floats(low, high, log=False, when=None):
    return Param("float", low=float(low), high=float(high), log=log, when=when)


SGD_WITH_MOMENTUM = ("momentum", "nesterov")  # the optimizers that read `momentum`

# Shared by every family; the order is the order of the columns in results.csv.
COMMON_SPACE = {
    "optimizer": choice("momentum", "nesterov", "rmsprop", "adam"),
    "lr": floats(1e-4, 0.3, log=True),                       # peak learning rate
    "momentum": floats(0.5, 0.99, when=("optimizer", SGD_WITH_MOMENTUM)),
    "schedule": choice("constant", "step", "cosine", "exponential"),
    "activation": choice("relu", "leaky_relu", "prelu", "elu", "gelu", "tanh"),
    "init": choice("he_normal", "he_uniform", "glorot_uniform", "glorot_normal", "lecun_normal"),
    "batch_norm": boolean(),
    "l2": floats(1e-6, 1e-3, log=True),                      # kernel penalty l2 * sum w^2
    "dropout": floats(0.0, 0.6),                              # on the hidden FC layers / head
}

# The families' own choices. "depth" picks a registered variant (resnet20/32/44/56,
# vgg11/13/16/19_cifar) at full scale; "width" multiplies the variant's channel counts.


def family_param(spec):
    """A `Param` from a family's plain-data spec: a list of values (a choice;
    [True, False] an on/off switch) or {"low", "high", "log"} (a float range)."""
    if isinstance(spec, dict):
        return floats(spec["low"], spec["high"], log=spec.get("log", False))
    values = tuple(spec)
    if set(values) == {True, False} and all(isinstance(v, bool) for v in values):
        return boolean()
    return choice(*values)


def search_space(family, scale="full"):
    """The coarse search space of a family: {name: Param}, shared options first."""
    resolve.check_choice("family", family, families())
    resolve.check_choice("scale", scale, SCALES)
    own = zoo.get_family(family).search_space[scale]
    return {**COMMON_SPACE, **{name: family_param(spec) for name, spec in own.items()}}


def search_model(family, scale, values):
    """The registered model name and constructor options for sampled `values`."""
    return zoo.get_family(family).search_model(scale, values)


def space_to_json(space):
    return {name: p.to_json() for name, p in space.items()}


def space_from_json(d):
    return {name: Param.from_json(p) for name, p in d.items()}


def refine_space(space, rows, top_k=REFINE_TOP, log_margin=LOG_MARGIN,
                 linear_margin=LINEAR_MARGIN):
    """Narrows `space` around the best `top_k` completed trials in `rows`.

    Float ranges shrink to [min, max] of the top trials' values, widened by a
    factor `log_margin` (log ranges) or by `linear_margin` of the old range
    (linear ones), and never beyond the old range; choices and booleans keep
    only the values the top trials took. A parameter none of them used (an
    inactive conditional one) keeps its range.
    """
    best = top_rows(rows, top_k)
    if not best:
        raise ValueError("rows hold no completed trial to refine around")
    refined = {}
    for name, p in space.items():
        seen = [r[name] for r in best if r.get(name) is not None]
        if not seen:
            refined[name] = p
        elif p.kind == "float":
            lo, hi = min(seen), max(seen)
            if p.log:
                lo, hi = lo / log_margin, hi * log_margin
            else:
                pad = linear_margin * (p.high - p.low)
                lo, hi = lo - pad, hi + pad
            refined[name] = dataclasses.replace(p, low=max(p.low, lo), high=min(p.high, hi))
        else:
            refined[name] = dataclasses.replace(p, values=tuple(x for x in p.values if x in seen))
    return refined


def top_rows(rows, n):
    """The `n` completed rows with the best validation accuracy, best first."""
    done = [r for r in rows if r.get("val_accuracy") is not None
            and math.isfinite(r["val_accuracy"])]
    return sorted(done, key=lambda r: -r["val_accuracy"])[:n]
