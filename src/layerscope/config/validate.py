"""Every config key is checked here, before data or model work starts: one rule per key, in one place.

``validate(cfg)`` walks the composed config group by group. Each key needs a rule: a key that no
rule knows is an error (also one added with ``++``), and a key the chosen activation, initializer,
optimizer, scheduler or dataset does not read is one too. Each value must pass its rule: whole
numbers are ints (not booleans) within bounds, numbers are finite (no nan or inf) and within range,
switches are true or false, names are registered choices. Each upper bound (``BOUNDS``) carries
its reason, which the error repeats. Memory is the real bound on widths and data sizes:
``check_against_data`` refuses a run whose parameters, gradients, optimizer state and activations
(``run_bytes``) exceed the device's free memory and says how many GB it needs, and
``check_data_size`` does the same for a synthetic dataset before it is drawn.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import Any, Callable, Iterable, Mapping

import torch

from layerscope.data.datasets import DATASETS, Data
from layerscope.errors import ConfigError
from layerscope.nets.activations import ACTIVATIONS, parameters
from layerscope.nets.init import INITIALIZERS
from layerscope.nets.losses import LOSSES
from layerscope.nets.mlp import BATCH_NORMS, BN_PLACEMENTS, hidden_fans
from layerscope.optim.rules import OPTIMIZERS
from layerscope.optim.schedules import SCHEDULERS
from layerscope.paths import choices, preset

BOUNDS = {
    "depth": (1000, "100 times the lecture's 10 layers"),
    "steps": (10**9, "weeks of training at the fastest rate measured"),
    "seed": (2**64 - 1, "the largest seed torch accepts"),
    "bins": (10_000, "finer than the probe's sampled values can fill"),
    "count": (10**9, "beyond any machine's memory"),
    "threads": (4096, "more than any machine's cores"),
}
"""Upper bounds of whole-number keys: (bound, why)."""
GB = 1024**3

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""``trainer.dtype`` choices: float64 makes reduction order negligible (the stacked-equivalence tests)."""

Rule = Callable[[str, Any], Any]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} characters)"


def whole(minimum: int = 1, bound: str = "count", optional: bool = False) -> Rule:
    """An int (not a bool) from ``minimum`` up to ``BOUNDS[bound]``, or None when ``optional``."""
    maximum, why = BOUNDS[bound]

    def check(key: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{key}={_show(value)} must be a whole number >= {minimum}" + (" or null" if optional else ""))
        if value > maximum:
            raise ConfigError(f"{key}={_show(value)} must be at most {maximum:,} ({why})")
        return value
    return check


def number(low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False,
           optional: bool = False) -> Rule:
    """A finite int or float in the interval; ``low_open``/``high_open`` exclude its ends."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    if high == math.inf:
        accepted = f"> {low:g}" if low_open else (f">= {low:g}" if low > -math.inf else "")
    else:
        accepted = f"in {left}{low:g}, {high:g}{right}"

    def check(key: str, value: Any) -> Any:
        if value is None and optional:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
        if not ok:
            raise ConfigError(f"{key}={_show(value)} must be a finite number {accepted}".rstrip()
                              + (" or null" if optional else ""))
        return value
    return check


def choice(source: Iterable[str]) -> Rule:
    """One of the names in ``source`` (a registry is read when the value is checked)."""
    def check(key: str, value: Any) -> Any:
        names = list(source)
        if value not in names:
            raise ConfigError(f"{key}={_show(value)} is unknown; choose one of: {', '.join(names)}")
        return value
    return check


def boolean(key: str, value: Any) -> bool:
    """true or false, nothing else (``maybe`` and ``yes`` are not switches)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={_show(value)} must be true or false")
    return value


def figures(key: str, value: Any) -> bool | str:
    """true (the first and last probe), every, or false."""
    if value != "every" and not isinstance(value, bool):
        raise ConfigError(f"{key}={_show(value)} must be true (the first and last probe's figures), every or false")
    return value


def text(key: str, value: Any) -> str:
    """A string (a folder, a file name)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={_show(value)} must be a non-empty text")
    return value


def _gain(key: str, value: Any) -> Any:
    if value == "auto":
        return value
    try:
        return RATE(key, value)
    except ConfigError as err:
        raise ConfigError(f"{err} or auto (the activation's recommended gain)") from None


def _device(key: str, value: Any) -> str:
    resolve_device(value)
    return value


def _mirrors(key: str, value: Any) -> Any:
    """A non-empty list of http(s) URLs (a dataset's mirrors, tried in order)."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, Iterable) or not list(value):
        raise ConfigError(f"{key}={_show(value)} must be a list of http(s) URLs, e.g. [https://host/folder/]")
    for i, url in enumerate(value):
        scheme, _, rest = url.partition("://") if isinstance(url, str) else ("", "", "")
        if scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0] or len(url.split()) != 1:
            raise ConfigError(f"{key}[{i}]={repr(url)[:100]} must be an http:// or https:// URL with a host")
    return value


def _md5s(key: str, value: Any) -> Any:
    """File names (no folder) mapped to their published MD5s: 32 hex digits."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{key}={_show(value)} must map file names to their MD5s, e.g. {{name.gz: <32 hex digits>}}")
    for name, md5 in value.items():
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ConfigError(f"{key} names {repr(name)[:100]}; a file name there holds no folder")
        if not isinstance(md5, str) or len(md5) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5):
            raise ConfigError(f"{key}.{name}={repr(md5)[:100]} must be an MD5: 32 hex digits")
    return value


FRACTION = number(0.0, 1.0, low_open=True, high_open=True)
RATE = number(0.0, low_open=True)
DECAY = number(0.0, 1.0, high_open=True)  # μ and ρ: a running average needs a weight below 1
FINITE = number()

RULES: dict[str, dict[str, Rule]] = {
    "model": {"depth": whole(1, "depth"), "width": whole(1, "count"), "dropout": number(0.0, 1.0, high_open=True)},
    "bn": {"placement": choice(BN_PLACEMENTS)},
    "trainer": {
        "epochs": whole(0, "steps"), "max_steps": whole(0, "steps", optional=True), "batch_size": whole(1),
        "seed": whole(0, "seed"), "device": _device, "threads": whole(1, "threads", optional=True),
        "dtype": choice(DTYPES), "cuda_graph": boolean, "weight_decay": number(0.0), "l1": number(0.0),
        "clip_grad_norm": number(0.0, low_open=True, optional=True),
        "clip_grad_value": number(0.0, low_open=True, optional=True), "progress": boolean,
        "checkpoint_every": whole(1, "steps", optional=True), "resume": boolean, "fail_on_divergence": boolean},
    "probe": {"every": whole(1, "steps"), "bins": whole(2, "bins"),
              "histogram_sample": whole(2, "count", optional=True),
              "saturation_margin": number(0.0, 0.5, low_open=True, high_open=True), "figures": figures},
    "loss": {"name": choice(LOSSES), "alpha": number(0.0, 1.0), "gamma": number(0.0), "beta": RATE},
    "optimizer": {"name": choice(OPTIMIZERS), "lr": RATE, "mu": DECAY, "rho": DECAY, "delta": RATE,
                  "bias_correction": boolean},
    "scheduler": {"name": choice(SCHEDULERS), "step_size": whole(1, "steps"), "gamma": RATE, "decay": RATE},
    "init": {"name": choice(INITIALIZERS), "std": number(0.0), "gain": _gain,
             "mode": choice(("fan_in", "fan_out", "fan_avg")), "bias": FINITE,
             "bias_std": number(0.0)},
    "activation": {"name": choice(ACTIVATIONS), "negative_slope": FINITE, "alpha": FINITE, "init": FINITE,
                   "approximate": choice(("none", "tanh")), "beta": RATE, "threshold": FINITE},
    "data": {"name": choice(DATASETS), "standardize": boolean, "max_train": whole(1, optional=True),
             "root": text, "test_fraction": FRACTION, "n_train": whole(1), "n_test": whole(1), "dim": whole(1),
             "classes": whole(2), "n_per_class": whole(1), "noise": number(0.0), "download": boolean,
             "mirrors": _mirrors, "files": _md5s},
}
"""The rule of every key of every config group."""

READS: dict[str, dict[str, tuple[str, ...]]] = {
    "optimizer": {"sgd": ("lr",), "momentum": ("lr", "mu"), "nesterov": ("lr", "mu"), "adagrad": ("lr", "delta"),
                  "rmsprop": ("lr", "rho", "delta"), "adam": ("lr", "mu", "rho", "delta", "bias_correction")},
    "scheduler": {"constant": (), "step": ("step_size", "gamma"), "exponential": ("gamma",),
                  "inverse_time": ("decay",)},
    "init": {"zeros": ("bias", "bias_std"), "default": (), "normal": ("std", "bias", "bias_std"),
             **{n: ("gain", "mode", "bias", "bias_std")
                for n in ("xavier_normal", "xavier_uniform", "he_normal", "he_uniform")},
             "lecun_normal": ("bias", "bias_std"), "lecun_uniform": ("bias", "bias_std"),
             "orthogonal": ("gain", "bias", "bias_std"), "glorot_uniform": ("gain", "bias", "bias_std"),
             "glorot_standard": ("bias", "bias_std")},
    "loss": {"cross_entropy": (), "mse": (), "bce": (), "sigmoid_mse": (), "l1": (), "smooth_l1": ("beta",), "focal": ("alpha", "gamma")},
    "data": {"gaussian": ("n_train", "n_test", "dim", "classes"), "digits": ("test_fraction",), "mnist5k": ("test_fraction",),
             "spirals": ("classes", "n_per_class", "noise", "test_fraction"),
             **{n: ("root", "download", "mirrors", "files") for n in ("mnist", "fashion_mnist", "cifar10")}},
}
"""The keys each choice reads beside ``name`` (data also reads standardize and max_train); the
activations' come from their constructors (``activations.parameters``)."""

NEEDS = {"model": ("depth", "width"), "bn": ("placement",), "optimizer": ("lr",), "scheduler=step": ("step_size", "gamma"),
         "scheduler=exponential": ("gamma",), "scheduler=inverse_time": ("decay",)}
"""Keys a group (or one of its choices) cannot do without."""

TOP_LEVEL = {"skip_completed": boolean}
SECTIONS_CHECKED_ELSEWHERE = ("grid", "reproduce")  # an experiment's grid (grid.py) and its claim (reproduce.py)


def _reads(group: str, name: str) -> tuple[str, ...]:
    if group == "activation":
        return tuple(parameters(name))
    if group == "data":
        return READS["data"][name] + ("standardize", "max_train")
    return READS.get(group, {}).get(name, tuple(k for k in RULES[group] if k != "name"))


SETTINGS_ELSEWHERE = {"output_dir": "the run's folder is set by hydra.run.dir=<folder> (hydra.sweep.dir=<folder> with -m)"}
"""Keys people expect, and the setting that does what they name."""


def holders(group: str, key: str) -> list[str]:
    """The choices of config group ``group`` that read ``key`` (optimizer, mu: adam, momentum, nesterov)."""
    if group not in READS and group != "activation":
        return []
    return [c for c in choices(group) if key in _reads(group, preset(group, c).get("name", c))]


def key_hint(key: str, chosen: str | None = None) -> str:
    """How to set ``key``, which the config lacks, as an override that works; "" when nothing sets it. ``chosen``:
    the group's choice, whose file lacks ``key`` (then ``+key`` adds it, if that choice reads it)."""
    if key in SETTINGS_ELSEWHERE:
        return SETTINGS_ELSEWHERE[key]
    group, _, leaf = key.partition(".")
    have = holders(group, leaf) if leaf and "." not in leaf else []
    if chosen in have:
        return f"{group}={chosen} reads it but its file does not set it: add it with +{key}=..."
    if not have:
        return ""
    plus = "" if leaf in preset(group, have[0]) else "+"
    return (f"{key} is a key of {group}={', '.join(have)}; choose one of those, "
            f"e.g. {group}={have[0]} {plus}{key}=...")


def _unknown(key: str, known: Iterable[str], owner: str) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    hint = f"did you mean {key.rsplit('.', 1)[0]}.{close[0]}? " if close and "." in key else ""
    where = key_hint(key)
    return ConfigError(f"{key} is not a key of {owner}; {hint}its keys: {', '.join(known) or 'none'}"
                       + (f"; {where}" if where else ""))


def _as_typed(key: str, value: Any) -> str:
    """The key a nested value came from as the user typed it: ``unknown.key`` for ``++unknown.key=1``."""
    while isinstance(value, Mapping) and len(value) == 1:
        (sub, value), = value.items()
        key = f"{key}.{sub}"
    return key


def check_group(group: str, values: Mapping[str, Any]) -> None:
    """Check one config group's keys against ``RULES`` and what its choice reads (``READS``)."""
    rules = RULES[group]
    named = "name" in rules
    name = rules["name"](f"{group}.name" if group != "activation" else "activation", values.get("name")) if named else None
    allowed = ({"name", *_reads(group, name)}) if named else set(rules)
    for key, value in values.items():
        full = f"{group}.{key}"
        if key not in allowed or key not in rules:
            raise _unknown(full, allowed & set(rules) if named else allowed, f"{group}={name}" if named else group)
        rules[key](full, value)
    for key in (*NEEDS.get(group, ()), *NEEDS.get(f"{group}={name}", ())):
        if values.get(key) is None:
            raise ConfigError(f"{group}={name} needs {group}.{key}" if named else f"{group} needs {group}.{key}")


def validate(cfg: Mapping[str, Any]) -> torch.device:
    """Check every key of the run's config; return the run's device. The first bad key is a ConfigError."""
    for key, value in cfg.items():
        if key in RULES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a config group, not {_show(value)}")
            check_group(key, value)
        elif key in TOP_LEVEL:
            TOP_LEVEL[key](key, value)
        elif key not in SECTIONS_CHECKED_ELSEWHERE:
            raise _unknown(_as_typed(key, value), [*RULES, *TOP_LEVEL], "the config")
    missing = [g for g in RULES if g not in cfg]
    if missing:
        raise ConfigError(f"the config has no {', '.join(missing)} group; pick one, e.g. {missing[0]}=<choice>")
    return resolve_device(cfg["trainer"]["device"])


def resolve_device(name: Any) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` -> the current GPU by index; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r} is unknown; choose auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={name!r} is not supported; choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but this machine has no CUDA GPU "
                          f"(torch {torch.__version__}); use trainer.device=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name!r} but only {torch.cuda.device_count()} GPU(s) are visible")
    if device.type == "cuda" and device.index is None:  # torch.cuda.set_device needs the index
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def data_bytes(cfg: Mapping[str, Any]) -> int:
    """Host bytes a synthetic dataset will take (0 for datasets read from files)."""
    data = cfg["data"]
    if data["name"] == "gaussian":
        return 4 * (data["n_train"] + data["n_test"]) * (data["dim"] + 1)
    if data["name"] == "spirals":
        return 4 * 3 * data["classes"] * data["n_per_class"]
    return 0


EVAL_CHUNK = 4096  # test examples evaluated in one pass (trainer.evaluate); the memory plan counts one chunk


def run_bytes(cfg: Mapping[str, Any], data: Data) -> int:
    """Device bytes one run needs: parameters with their gradients (twice on a GPU: per parameter and
    gathered), update temporaries and two optimizer moments (8 copies), activations and their
    gradients (8 per unit and example), the test pass, and its own data when that depends on its seed."""
    depth, width, batch = cfg["model"]["depth"], cfg["model"]["width"], cfg["trainer"]["batch_size"]
    fans = hidden_fans(data.input_dim, width, depth)
    params = sum((fan + 1) * width for fan in fans) + (width + 1) * data.num_classes + 4 * width * depth
    values = 8 * params + 8 * batch * width * depth + 3 * min(EVAL_CHUNK, len(data.x_test)) * width
    if data.seeded:
        values += data.x_train.numel() + data.x_test.numel()
    return values * torch.finfo(DTYPES[cfg["trainer"]["dtype"]]).bits // 8


def free_bytes(device: torch.device) -> int:
    """Free memory of the device (available host memory for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            return next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_data_size(cfg: Mapping[str, Any]) -> None:
    """A synthetic dataset must fit the host's memory before it is drawn."""
    need, free = data_bytes(cfg), free_bytes(torch.device("cpu"))
    if need > free:
        raise ConfigError(f"data={cfg['data']['name']} of this size needs {need / GB:.1f} GB but the host has "
                          f"{free / GB:.1f} GB available; use smaller data sizes")


def check_against_data(cfg: Mapping[str, Any], data: Data, device: torch.device) -> None:
    """What needs the data's shape: the batch fits the training set, BN has two examples, the run fits memory."""
    batch, n_train = cfg["trainer"]["batch_size"], len(data.x_train)
    if batch > n_train:
        raise ConfigError(f"trainer.batch_size={batch} is larger than the {n_train} training examples of "
                          f"data={data.name}; use trainer.batch_size<={n_train}")
    placement = cfg["bn"]["placement"]
    if placement in BATCH_NORMS and batch < 2:
        raise ConfigError(f"bn={placement} needs batches of 2 or more; use trainer.batch_size>=2, layer norm "
                          f"(bn=ln_{placement}) or bn=none")
    need, free = run_bytes(cfg, data), free_bytes(device)
    if need > free:
        raise ConfigError(f"model.depth={cfg['model']['depth']} model.width={cfg['model']['width']} needs "
                          f"{need / GB:.1f} GB with its gradients, optimizer state and activations, but {device} "
                          f"has {free / GB:.1f} GB free; use a smaller model.width, model.depth or trainer.batch_size")
