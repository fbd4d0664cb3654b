"""What ``benchmarks.compare`` runs: the methods, models, budgets and profiles, and the names of its files.

The data model shared by the runner (``compare_run``, ``compare_prune``, ``compare_data``), the estimate
(``compare_estimate``), the report renderer (``compare_report``) and the command line (``compare``). It
imports no other module of the comparison, so each of them can read it without an import cycle.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from benchmarks import common

MODELS = ("vgg16", "resnet56")
BUDGETS = ("filters:0.5", "filters:0.8", "macs:0.5", "macs:0.75")
LOSS = "sparse_categorical_crossentropy"


@dataclasses.dataclass(frozen=True)
class Method:
    """How a method prunes: the criterion ranking channels, global or uniform selection, ADMM or one shot."""

    criterion: str
    mode: str = "global"
    admm: bool = False
    label: str = ""


METHODS = {
    "easiedge": Method("tbaa", admm=True, label="EasiEdge (ADMM + TBAA)"),
    "tbaa": Method("tbaa", label="one-shot TBAA + FT"),
    "l1": Method("l1", label="one-shot L1 + FT (Li et al.)"),
    "taylor_fo": Method("taylor_fo", label="first-order Taylor + FT (Molchanov et al.)"),
    "uniform_l1": Method("l1", mode="uniform", label="layer-wise uniform L1 + FT"),
    "random": Method("random", label="random + FT"),
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """The scale of a comparison: baselines, data, epochs after the baseline, measurement settings.

    Every method trains ``finetune_epochs`` epochs after the baseline; EasiEdge spends ``admm_epochs`` of them
    in ADMM and the rest in the masked fine-tune. The fine-tune optimizer is SGD (momentum 0.9, Nesterov)
    with a cosine decay from ``finetune_lr`` to 0 over all those epochs and Keras's decoupled weight decay.
    ``train_images`` (None: all 50,000) are the first images of the training set; the baseline holds out
    ``val_split`` of them to pick its epoch and log progress, and pruning fine-tunes on all of them.
    """

    name: str
    widths: dict[str, float]
    train_images: int | None
    val_split: float
    baseline_epochs: int
    batch_size: int
    baseline_lr: float
    finetune_epochs: int
    admm_epochs: int
    finetune_lr: float
    finetune_weight_decay: float
    test_images: int | None
    calibration_images: int
    zsteps_per_epoch: int
    min_update_interval: int
    latency_warmup: int
    latency_runs: int
    seed: int = 0
    admm_rho: float | None = None  # EasiEdge's initial rho; None: the library default
    admm_rho_max: float | None = None  # EasiEdge's final rho; None: the library default
    min_fraction: float = 0.0  # every method's selection keeps at least this fraction of each group
    # BatchNorm statistics re-estimated on this many training images: the baseline after training, every
    # method's slim model after its fine-tune (EasiEdge.run's ``recalibrate_bn``)
    recalibrate_bn: int = 2048
    # Every method's fine-tune (and EasiEdge's ADMM) runs its train steps eagerly (``compile(run_eagerly=True)``)
    # instead of tracing them: at smoke scale a run has ~10 steps, and tracing the wrapped train step costs
    # several times what they do. The same steps, so the same recipe; only the execution mode differs.
    run_eagerly: bool = False

    def __post_init__(self):
        if not 0 < self.admm_epochs < self.finetune_epochs:
            raise ValueError(f"profile {self.name!r}: need 0 < admm_epochs < finetune_epochs (EasiEdge needs a "
                             f"fine-tune after ADMM), got {self.admm_epochs} and {self.finetune_epochs}")

    def train_config(self, model: str) -> common.TrainConfig:
        """The baseline's training recipe (``common.train`` defaults for the rest)."""
        return common.TrainConfig(model=model, width=self.widths[model], epochs=self.baseline_epochs,
                                  batch_size=self.batch_size, lr=self.baseline_lr, val_split=self.val_split,
                                  seed=self.seed, train_limit=self.train_images,
                                  recalibrate_bn=self.recalibrate_bn)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what every result records as ``profile_config``)."""
        return dataclasses.asdict(self)

    def matches(self, stored: dict[str, Any] | None) -> bool:
        """Whether a result's ``profile_config`` was made with these settings (``common.config_matches``)."""
        return common.config_matches(stored, self)

    def with_overrides(self, overrides: dict[str, str]) -> Profile:
        """This profile with the pruning settings in ``overrides`` (``{field: text}``) changed.

        Only what happens after the baseline may change (:data:`TUNABLE`): the baseline and the data stay
        those of the profile, so the tuned runs prune the same cached baselines.
        """
        changes = {}
        for key, text in overrides.items():
            if key not in TUNABLE:
                raise ValueError(f"--set {key}: not a tunable setting; choose from {', '.join(TUNABLE)}")
            current = getattr(self, key)
            kind = TUNABLE[key]
            try:
                changes[key] = None if text.lower() == "none" and current is None else kind(text)
            except ValueError:
                raise ValueError(f"--set {key}={text}: expected a {kind.__name__}") from None
        return dataclasses.replace(self, **changes)


#: The settings ``--set`` may change, with their types: the one-shot methods' knob (the fine-tune learning
#: rate, which EasiEdge's W-steps use too) and EasiEdge's own (rho, Z-step spacing, calibration size).
TUNABLE = {"finetune_lr": float, "finetune_weight_decay": float, "admm_rho": float, "admm_rho_max": float,
           "zsteps_per_epoch": int, "min_update_interval": int, "calibration_images": int, "admm_epochs": int,
           "min_fraction": float}


PROFILES = {
    # Smoke scale for CI (the test runs 7 of its 48 runs): 128 images, half held out (whole batches: one baseline
    # step, 2 per epoch after it), one baseline epoch, 2 after it, run eagerly (tracing would cost more).
    "tiny": Profile("tiny", widths={"vgg16": 0.125, "resnet56": 0.25}, train_images=64, val_split=0.5,
                    baseline_epochs=1, batch_size=64, baseline_lr=0.05, finetune_epochs=2, admm_epochs=1,
                    finetune_lr=0.01, finetune_weight_decay=5e-3, test_images=256, calibration_images=64,
                    zsteps_per_epoch=2, min_update_interval=1, latency_warmup=2, latency_runs=10,
                    run_eagerly=True),
    # About 90 minutes on 2 quiet cores (see benchmarks/README.md, "compare", for the estimate).
    "cpu": Profile("cpu", widths={"vgg16": 0.25, "resnet56": 0.25}, train_images=4000, val_split=0.1,
                   baseline_epochs=15, batch_size=128, baseline_lr=0.1, finetune_epochs=2, admm_epochs=1,
                   finetune_lr=0.01, finetune_weight_decay=5e-3, test_images=2000, calibration_images=256,
                   zsteps_per_epoch=4, min_update_interval=8, latency_warmup=10, latency_runs=100),
    # Paper scale for a GPU machine: full width, all data, 160 baseline epochs, 60 epochs after them.
    "full": Profile("full", widths={"vgg16": 1.0, "resnet56": 1.0}, train_images=None, val_split=0.0,
                    baseline_epochs=160, batch_size=128, baseline_lr=0.1, finetune_epochs=60, admm_epochs=30,
                    finetune_lr=0.01, finetune_weight_decay=5e-3, test_images=None, calibration_images=512,
                    zsteps_per_epoch=2, min_update_interval=50, latency_warmup=20, latency_runs=200),
}


# --------------------------------------------------------------------------- names of runs and files
def budget_tag(text: str) -> str:
    """The file-name form of a budget: ``"filters:0.5"`` -> ``"filters50"``, ``"macs:0.75"`` -> ``"macs75"``.

    Example:
        >>> budget_tag("macs:0.75"), budget_tag("filters:0.8")
        ('macs75', 'filters80')
    """
    from tfmot_easiedge.selection import parse_budget

    budget = parse_budget(text)
    return f"{budget.describe()['kind']}{round(budget.ratio * 100):g}"


def run_stem(model: str, method: str, budget: str) -> str:
    """``<model>_<method>_<budget tag>``, the name of a run's JSON (and saved slim model)."""
    return f"{model}_{method}_{budget_tag(budget)}"


def cache_name(profile: Profile, model: str) -> str:
    """The baseline's cache name, e.g. ``vgg16_w0.25_cpu`` (the recorded config must also match)."""
    return f"{profile.train_config(model).default_name()}_{profile.name}"


def tuning_tag(overrides: dict[str, str]) -> str:
    """The folder name of a tuning setting: ``{"finetune_lr": "0.03"}`` -> ``"finetune_lr=0.03"``."""
    return ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
