"""Typed experiment configuration: nested dataclasses, YAML presets, dotted overrides.

One place for defaults. A preset (YAML) holds only what differs from these defaults;
``train.lr=0.05``-style overrides come last. Unknown keys and wrong types are errors, so
a typo never silently falls back to a default. The resolved config is saved in every run
directory and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixcollapse.catalog import CATALOG, dataset_names

PIPELINES = ("tensor", "loader")  # how training batches are built (DataConfig.pipeline)
MODELS = ("small", "wrn", "vit")
LOSSES = ("ce", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine", "constant")
BN_MODES = ("recalibrate", "train", "eval")
LAMBDA_MODES = ("beta", "grid")
MIXING_METHODS = ("none", "mixup", "manifold", "cutmix")
OLD_SECTIONS = {"mixup": "mixing"}  # sections renamed since: the old name is still read


class ConfigError(ValueError):
    """A config value, preset or override is wrong; the message says what and how to fix it."""


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how training images are augmented."""

    name: str = "digits"
    root: str = "data"
    download: bool = True  # try torchvision's download when files are missing
    augment: bool = True  # the paper's CIFAR augmentation: random crop (padding 4) + flip
    crop_padding: int = 4
    flip: bool = True
    classes: list[int] | None = None  # train on a subset of classes (relabelled 0..k-1)
    train_limit: int | None = None  # keep the first N training images (tiny runs)
    test_limit: int | None = None
    split_seed: int = 0  # the digits train/test split
    # "tensor": the dataset held as one tensor on the training device, batches built with tensor operations
    # (mixcollapse.data.batches; no worker processes); "loader": torchvision's per-sample transforms in a DataLoader
    pipeline: str = "tensor"
    # data.name=imagefolder (mixcollapse.data.folders): images resized to image_size x image_size (None: the first
    # training image's size), normalised by mean/std (None: computed from the training images)
    image_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    num_workers: int = 0  # DataLoader worker processes (data.pipeline=loader only)


@dataclass
class ModelConfig:
    """Architecture; every model exposes ``features(x)`` and a final linear ``classifier``."""

    name: str = "small"
    # WideResNet-depth-width (the paper: WRN-40-10, no dropout)
    depth: int = 40
    width: int = 10
    # ViT (the paper: ViT-B with patch size 4 on 32x32 images)
    patch_size: int = 4
    embed_dim: int = 768
    vit_depth: int = 12
    num_heads: int = 12
    # the small network of the embedded digits default
    hidden: int = 64
    # classifier
    bias: bool = True
    fixed_etf: bool = False  # fix the classifier to a simplex ETF (eq. 3) and never train it
    etf_multiplier: float = 1.0
    etf_seed: int = 0


@dataclass
class MixingConfig:
    """How training mixes images and targets: the paper's mixup (eq. 1) and the methods compared with it.

    ``method``: ``mixup`` (Zhang et al. 2017: lam x_a + (1 - lam) x_b), ``manifold`` (Verma et al. 2019: the
    same blend of hidden states, at a layer drawn per batch from ``layers``: 0 is the input, k the output of
    the model's k-th stage or block), ``cutmix`` (Yun et al. 2019: a box of x_b of area about 1 - lam pasted
    into x_a, lam then the exact share of x_a's pixels) or ``none``. lam ~ Beta(alpha, alpha); alpha = 0 turns
    mixing off (the paper's baseline). ``label_smoothing`` (epsilon): targets (1 - eps) y + eps / C, with
    any method. The section was called ``mixup`` before; that name is still read (presets, overrides, runs).
    """

    method: str = "mixup"
    alpha: float = 1.0
    per_sample: bool = False  # one lambda per sample instead of one per batch (mixup, manifold)
    layers: list[int] = field(default_factory=lambda: [0, 1, 2])  # manifold: where hidden states may be mixed
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """Loss, optimizer, schedule and bookkeeping (Appendix B.1)."""

    epochs: int = 30
    batch_size: int = 128
    loss: str = "ce"
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.9])  # fractions of training
    gamma: float = 0.1
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 (autocast, GPU)
    channels_last: bool = False
    threads: int = 0  # torch CPU threads; 0 keeps torch's default. Small models run fastest on 1
    checkpoint_every: int = 10  # epochs; 0 disables periodic checkpoints (the last is always kept)
    checkpoint_epochs: list[int] = field(default_factory=list)  # kept forever (Figure 10: 100/300/500)
    eval_every: int = 1
    progress: bool = True
    tensorboard: bool = True  # also write TensorBoard event files into run_dir/tensorboard (metrics.jsonl stays)


@dataclass
class AnalysisConfig:
    """Mixup-pair features of Section 2.2: which classes, how many pairs, which lambdas."""

    classes: list[int] | None = None  # three class indices; None = three drawn with `seed`
    seed: int = 0
    pairs_per_class_pair: int = 300  # per unordered class pair {a, b}, same-class included
    lam: str = "beta"  # beta: lambda from the training distribution; grid: evenly spaced
    grid_size: int = 11
    bn_mode: str = "recalibrate"
    recalibrate_batches: int = 50
    batch_size: int = 256
    # lambda_H of the unconstrained features model whose optimum the features are compared with
    # (ufm_distance); None = the run's train.weight_decay (measure_model without a run: 1e-4).
    ufm_weight_decay: float | None = None
    # mixed test pairs over all classes for Figure 4's confidence/error against lambda; 0 skips them
    test_pairs: int = 2000
    # neural collapse (and the channels' class centres) on this many training samples drawn with `seed`;
    # None = the whole training set
    nc_samples: int | None = None
    # where the analysis pairs are mixed: 0 the input (the paper's figures; CutMix runs: their boxes), k the
    # output of the model's k-th stage or block (manifold mixup's mixing points), then read at the last layer
    mix_layer: int = 0


@dataclass
class ExperimentConfig:
    """Everything needed to redo one run."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (YAML/JSON friendly)."""
    return dataclasses.asdict(cfg)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` converted to ``hint`` where lossless (int -> float), else raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {_hint_name(hint)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")  # pragma: no cover


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "")


def _merge(cfg: Any, values: dict, where: str = "") -> None:
    """Write ``values`` into dataclass ``cfg`` in place, checking names and types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in values.items():
        if not where and key in OLD_SECTIONS and OLD_SECTIONS[key] not in values:
            key = OLD_SECTIONS[key]
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{path}' (known here: {', '.join(sorted(names))})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, path)
        else:
            setattr(cfg, key, _check_type(value, hints[key], path))


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.key=value`` and parse the value as YAML (numbers, lists, null, booleans)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value, e.g. train.lr=0.05")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _nest(key: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


PRESET_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """The presets shipped with the toolkit, by name."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str) -> Path:
    """Resolve a preset name (``digits``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = ", ".join(preset_names())
    raise ConfigError(f"no preset or YAML file '{name_or_path}' (presets: {known})")


def load_config(preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults, then the preset (name or YAML path), then dotted overrides; validated."""
    cfg = ExperimentConfig()
    if preset is not None:
        path = preset_path(str(preset))
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if values is None:
            raise ConfigError(f"{path} is empty: a preset sets at least one value (see the presets of mixcollapse)")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data:, model:, train:, ...), got {values!r}")
        _merge(cfg, values)
    apply_overrides(cfg, overrides)
    return cfg


def apply_overrides(
    cfg: ExperimentConfig, overrides: list[str] | tuple[str, ...], allowed: tuple[str, ...] | None = None
) -> None:
    """Apply ``section.key=value`` overrides in place and validate; ``allowed`` limits the key prefixes."""
    for text in overrides:
        key, value = parse_override(text)
        if allowed is not None and not key.startswith(allowed):
            raise ConfigError(f"override '{key}' is not allowed here (allowed: {', '.join(allowed)})")
        _merge(cfg, _nest(key, value))
    validate(cfg)


def config_from_dict(values: dict) -> ExperimentConfig:
    """Rebuild a config from its saved dict (run directory, checkpoint)."""
    cfg = ExperimentConfig()
    _merge(cfg, values)
    validate(cfg)
    return cfg


def _choice(value: str, options: tuple[str, ...], where: str) -> None:
    if value not in options:
        raise ConfigError(f"{where}='{value}' is not one of: {', '.join(options)}")


MIN_IMAGE_SIZE = 8  # the convolutional nets downsample by 2 (small) or 4 (WRN) before pooling


def check_model(
    m: ModelConfig, num_classes: int | None = None, in_channels: int | None = None, image_size: int | None = None
) -> None:
    """Raise ConfigError for an architecture that cannot be built (and for sizes it cannot take, when given).

    The one place for these checks: ``validate`` calls it on a config, ``models.build_model`` with the
    data's sizes.
    """
    _choice(m.name, MODELS, "model.name")
    if num_classes is not None and num_classes < 2:
        raise ConfigError(f"num_classes={num_classes} must be >= 2")
    if in_channels is not None and in_channels < 1:
        raise ConfigError(f"in_channels={in_channels} must be >= 1")
    if image_size is not None and m.name in ("small", "wrn") and image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"model '{m.name}' needs image_size >= {MIN_IMAGE_SIZE}, got {image_size}")
    if m.name == "wrn" and ((m.depth - 4) % 6 != 0 or m.depth < 10 or m.width < 1):
        raise ConfigError(
            f"WRN-{m.depth}-{m.width}: model.depth must be 6n + 4 >= 10 (e.g. 16, 28, 40) and model.width >= 1"
        )
    if m.name == "small" and m.hidden < 1:
        raise ConfigError(f"model.hidden={m.hidden} must be >= 1")
    if m.name == "vit":
        if m.num_heads < 1 or m.embed_dim % m.num_heads != 0:
            raise ConfigError(f"model.embed_dim={m.embed_dim} is not divisible by model.num_heads={m.num_heads}")
        if m.vit_depth < 1:
            raise ConfigError(f"model.vit_depth={m.vit_depth} must be >= 1")
        if m.patch_size < 1 or (image_size is not None and image_size % m.patch_size != 0):
            raise ConfigError(f"image_size={image_size} is not divisible by model.patch_size={m.patch_size}")


def check_analysis_classes(classes, num_classes: int, where: str = "classes") -> list[int]:
    """The three analysis classes as ints; ConfigError unless they are three distinct indices in 0..C-1."""
    classes = [int(c) for c in classes]
    if len(classes) != 3 or len(set(classes)) != 3:
        raise ConfigError(f"{where}={classes} must be three distinct class indices")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(f"{where} has index {bad[0]} out of range: the model has classes 0..{num_classes - 1}")
    return classes


def validate(cfg: ExperimentConfig) -> None:
    """Raise ConfigError with one clear sentence for the first invalid value."""
    d, m, mx, t, a = cfg.data, cfg.model, cfg.mixing, cfg.train, cfg.analysis
    _choice(d.name, dataset_names(), "data.name")
    _choice(d.pipeline, PIPELINES, "data.pipeline")
    _choice(m.name, MODELS, "model.name")
    _choice(t.loss, LOSSES, "train.loss")
    _choice(t.optimizer, OPTIMIZERS, "train.optimizer")
    _choice(t.schedule, SCHEDULES, "train.schedule")
    _choice(t.amp, ("none", "bf16"), "train.amp")
    _choice(a.bn_mode, BN_MODES, "analysis.bn_mode")
    _choice(a.lam, LAMBDA_MODES, "analysis.lam")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"train.device='{t.device}' must be auto, cpu, cuda or cuda:N")
    _check_mixing(mx)
    _check_folder_settings(d)
    _check_classes(d, a)
    _check_train(t)
    check_model(m)
    if m.fixed_etf and m.etf_multiplier == 0:
        raise ConfigError("model.etf_multiplier must be non-zero")
    _check_analysis(a)
    if d.train_limit is not None and d.train_limit < 1 or d.test_limit is not None and d.test_limit < 1:
        raise ConfigError("data.train_limit and data.test_limit must be >= 1 when set")


def _check_mixing(mx: MixingConfig) -> None:
    _choice(mx.method, MIXING_METHODS, "mixing.method")
    if mx.alpha < 0:
        raise ConfigError(f"mixing.alpha={mx.alpha} must be >= 0 (0 turns mixing off: the baseline)")
    if not 0 <= mx.label_smoothing < 1:
        raise ConfigError(f"mixing.label_smoothing={mx.label_smoothing} must lie in [0, 1) (0: one-hot targets)")
    if not mx.layers or any(k < 0 for k in mx.layers):
        raise ConfigError(f"mixing.layers={mx.layers} must list layer indices >= 0 (0: the input)")
    if mx.per_sample and mx.method == "cutmix":
        raise ConfigError("mixing.per_sample is for mixup and manifold; CutMix pastes one box per batch")


def _check_classes(d: DataConfig, a: AnalysisConfig) -> None:
    """data.classes (a subset of the dataset's classes) and analysis.classes (three of the model's)."""
    num_classes = CATALOG[d.name].num_classes  # None: an image folder's, known once it is read
    if d.classes is not None:
        twice = sorted({c for c in d.classes if d.classes.count(c) > 1})
        if twice:
            raise ConfigError(f"data.classes={d.classes} lists class {twice[0]} more than once; name each class once")
        if len(d.classes) < 2:
            raise ConfigError(f"data.classes={d.classes} must list at least two class indices")
        bad = [c for c in d.classes if c < 0 or (num_classes is not None and c >= num_classes)]
        if bad:
            raise ConfigError(
                f"data.classes has index {bad[0]} out of range: {d.name} has classes 0..{num_classes - 1}"
            )
        num_classes = len(d.classes)
    if a.classes is not None and num_classes is not None:
        check_analysis_classes(a.classes, num_classes, "analysis.classes")
    elif num_classes is not None and num_classes < 3:
        raise ConfigError("the analysis needs at least three classes; use more classes in data.classes")


def _check_train(t: TrainConfig) -> None:
    for name in ("epochs", "batch_size"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name}={getattr(t, name)} must be >= 1")
    if t.lr <= 0:
        raise ConfigError(f"train.lr={t.lr} must be > 0")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay={t.weight_decay} must be >= 0")
    if t.warmup_epochs < 0 or (t.warmup_epochs > 0 and t.warmup_epochs >= t.epochs):
        raise ConfigError(f"train.warmup_epochs={t.warmup_epochs} must be >= 0 and below train.epochs={t.epochs}")
    if any(not 0 < f < 1 for f in t.milestones):
        raise ConfigError(f"train.milestones={t.milestones} must be fractions of training in (0, 1)")
    if t.checkpoint_every < 0:
        raise ConfigError(f"train.checkpoint_every={t.checkpoint_every} must be >= 0")
    if t.threads < 0:
        raise ConfigError(f"train.threads={t.threads} must be >= 0 (0 keeps torch's default)")
    if t.eval_every < 1:
        raise ConfigError(f"train.eval_every={t.eval_every} must be >= 1")
    if any(e < 1 or e > t.epochs for e in t.checkpoint_epochs):
        raise ConfigError(f"train.checkpoint_epochs={t.checkpoint_epochs} must lie in 1..train.epochs={t.epochs}")


def _check_analysis(a: AnalysisConfig) -> None:
    if a.ufm_weight_decay is not None and a.ufm_weight_decay <= 0:
        raise ConfigError(
            f"analysis.ufm_weight_decay={a.ufm_weight_decay} must be > 0 (or null: the training weight decay)"
        )
    if a.nc_samples is not None and a.nc_samples < 1:
        raise ConfigError(f"analysis.nc_samples={a.nc_samples} must be >= 1 (or null: the whole training set)")
    if a.test_pairs < 0:
        raise ConfigError(f"analysis.test_pairs={a.test_pairs} must be >= 0 (0 skips the mixed test pairs)")
    if a.mix_layer < 0 or (a.mix_layer > 0 and a.bn_mode == "train"):
        raise ConfigError(
            f"analysis.mix_layer={a.mix_layer} must be >= 0 (0: the input), and hidden-layer pairs "
            "need analysis.bn_mode recalibrate or eval"
        )
    if a.pairs_per_class_pair < 1 or a.batch_size < 1 or a.grid_size < 2:
        raise ConfigError("analysis.pairs_per_class_pair and analysis.batch_size must be >= 1, analysis.grid_size >= 2")


def _check_folder_settings(d: DataConfig) -> None:
    """data.image_size, data.mean and data.std (read by data.name=imagefolder)."""
    if d.image_size is not None and d.image_size < 1:
        raise ConfigError(f"data.image_size={d.image_size} must be >= 1 (or null: the first training image's size)")
    if (d.mean is None) != (d.std is None):
        raise ConfigError("give data.mean and data.std together (or neither: computed from the training images)")
    if d.mean is not None and (len(d.mean) != 3 or len(d.std) != 3 or any(s <= 0 for s in d.std)):
        raise ConfigError(f"data.mean={d.mean} and data.std={d.std} must be three values each (RGB), the std > 0")


def num_classes(cfg: ExperimentConfig) -> int:
    """Number of classes the model predicts (the subset size when data.classes is set)."""
    if cfg.data.classes is not None:
        return len(cfg.data.classes)
    known = CATALOG[cfg.data.name].num_classes if cfg.data.name in CATALOG else None
    if known is None:
        raise ConfigError(f"the number of classes of data.name={cfg.data.name} is known once data.root is read")
    return known


def model_label(cfg: ExperimentConfig) -> str:
    """WRN-40-10, ViT-B/4, ViT-64d4b/4 (a smaller ViT), or the small network's name."""
    m = cfg.model
    if m.name == "wrn":
        return f"WRN-{m.depth}-{m.width}"
    if m.name == "vit":
        if (m.embed_dim, m.vit_depth, m.num_heads) == (768, 12, 12):
            return f"ViT-B/{m.patch_size}"
        return f"ViT-{m.embed_dim}d{m.vit_depth}b/{m.patch_size}"
    return m.name


def training_label(cfg: ExperimentConfig) -> str:
    """What distinguishes a run's training, for titles: loss, mixing method and alpha, label smoothing, fixed ETF,
    optimizer.

    ``CE baseline (no mixup)``, ``CE mixup α=1``, ``MSE mixup α=1``, ``CE CutMix α=1``, ``CE manifold mixup α=2``,
    ``CE label smoothing ε=0.1``, ``CE mixup α=1, fixed ETF classifier``.
    """
    t, mx = cfg.train, cfg.mixing
    names = {"mixup": "mixup", "manifold": "manifold mixup", "cutmix": "CutMix"}
    mixes = mx.method != "none" and mx.alpha > 0
    text = f"{t.loss.upper()} " + (f"{names[mx.method]} α={mx.alpha:g}" if mixes else "")
    if mx.label_smoothing > 0:
        text += f"{', ' if mixes else ''}label smoothing ε={mx.label_smoothing:g}"
    elif not mixes:
        text += "baseline (no mixup)"
    if cfg.model.fixed_etf:
        text += ", fixed ETF classifier"
    if t.optimizer != "sgd":
        text += f", {dict(adam='Adam', adamw='AdamW')[t.optimizer]}"
    return text


def dump_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
