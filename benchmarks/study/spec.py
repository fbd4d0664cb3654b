"""What the study runs: networks, budgets, arms, seeds, the schedule and the learning-rate grid.

Plain data, no TensorFlow. Every arm prunes the same committed baseline, trains the same number of epochs
after it (ADMM epochs and iterative rounds count), scores on the same calibration subset of a seed,
re-estimates BatchNorm the same way and picks its fine-tune learning rate from the same grid on 5,000
training images held out from fine-tuning; the test set is scored once per final run.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Net:
    """A committed baseline to prune."""

    name: str
    label: str
    model: str  # builder name in benchmarks.common.model_builders
    width: float
    baseline: Path | None  # committed .keras file; None: trained by the smoke profile itself


@dataclasses.dataclass(frozen=True)
class Arm:
    """One pruning method.

    ``kind`` is ``"admm"`` (EasiEdge: ADMM epochs, hard prune, masked fine-tune) or ``"oneshot"`` (score the
    baseline, select, hard prune, masked fine-tune; ``iterations > 1``: iterative pruning, the budget reached
    in that many rounds with fine-tuning between them).
    """

    name: str
    label: str
    kind: str
    criterion: str
    mode: str = "global"  # or "uniform": every group loses the same fraction (Li et al.)
    iterations: int = 1


@dataclasses.dataclass(frozen=True)
class Profile:
    """The scale of a study."""

    name: str
    nets: tuple[Net, ...]
    budgets: tuple[str, ...]
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    lr_grid: tuple[float, ...]
    epochs_after_baseline: int
    admm_epochs: int  # EasiEdge's share of the epochs after the baseline; the rest is fine-tuning
    heldout_images: int  # the last training images, never fine-tuned on, for choosing the learning rate
    train_images: int | None  # None: all 50,000 (minus the held-out ones)
    test_images: int | None  # None: all 10,000
    calibration_images: int
    batch_size: int
    weight_decay: float  # decoupled, as the baselines were trained
    label_smoothing: float
    recalibrate_bn: int
    min_fraction: float
    latency_runs: int  # TFLite float32, 1 thread, batch 1; 0 skips
    default_arm: str = "easiedge"  # what the paired tests compare against

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"unknown arm {name!r}; this profile has {[a.name for a in self.arms]}")

    def net(self, name: str) -> Net:
        for net in self.nets:
            if net.name == name:
                return net
        raise KeyError(f"unknown net {name!r}; this profile has {[n.name for n in self.nets]}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self, dict_factory=lambda items: {k: str(v) if isinstance(v, Path) else v
                                                                    for k, v in items})


ARMS = (
    Arm("easiedge", "EasiEdge (ADMM + TBAA)", "admm", "tbaa"),
    Arm("tbaa", "one-shot TBAA + FT", "oneshot", "tbaa"),
    Arm("tbaa_iterative", "iterative TBAA (3 rounds) + FT", "oneshot", "tbaa", iterations=3),
    Arm("taylor_fo", "Taylor-FO (Molchanov) + FT", "oneshot", "taylor_fo"),
    Arm("uniform_l1", "uniform L1 (Li et al.) + FT", "oneshot", "l1", mode="uniform"),
    Arm("group_l2", "global group magnitude (DepGraph style) + FT", "oneshot", "group_l2"),
    Arm("random", "random + FT", "oneshot", "random"),
    # The candidate from benchmarks/results/allocation_vgg16_bn_w0.35.md: joint allocation on measured damage curves.
    Arm("tbaa_joint", "one-shot TBAA, joint allocation (measured damage curves) + FT", "oneshot", "tbaa_curves"),
)

#: ``macs:0.75`` removes 75% of the MACs (4x fewer), ``macs:0.5`` 2x fewer, ``filters:0.8`` 80% of the filters.
BUDGETS = ("macs:0.75", "macs:0.5", "filters:0.8")

NETS = (
    Net("vgg16_bn_w0.35", "VGG-16-BN, width 0.35", "vgg16", 0.35, BENCHMARKS_DIR / "baselines" / "vgg16_bn_w0.35.keras"),
    Net("resnet20_w1", "ResNet-20", "resnet20", 1.0, BENCHMARKS_DIR / "baselines" / "resnet20_w1.keras"),
)

PROFILES = {
    # The study of the evidence issue: the campaign's order is (net, budget) in this order, all arms, 3 seeds.
    "cifar": Profile("cifar", nets=NETS, budgets=BUDGETS, arms=ARMS, seeds=(0, 1, 2), lr_grid=(0.003, 0.01, 0.03),
                     epochs_after_baseline=10, admm_epochs=4, heldout_images=5000, train_images=None,
                     test_images=None, calibration_images=512, batch_size=256, weight_decay=5e-3,
                     label_smoothing=0.1, recalibrate_bn=2048, min_fraction=0.05, latency_runs=100),
    # CI smoke: a tiny net trained in the run itself, two arms, one budget, one seed, a few hundred images.
    "smoke": Profile("smoke", nets=(Net("tiny", "tiny CNN (smoke)", "tiny_cnn", 1.0, None),),
                     budgets=("macs:0.5",), arms=(ARMS[0], ARMS[1]), seeds=(0,), lr_grid=(0.01, 0.03),
                     epochs_after_baseline=2, admm_epochs=1, heldout_images=128, train_images=512,
                     test_images=256, calibration_images=64, batch_size=64, weight_decay=5e-3,
                     label_smoothing=0.1, recalibrate_bn=256, min_fraction=0.05, latency_runs=5),
}


def budget_tag(budget: str) -> str:
    """File-name form: ``"macs:0.75"`` -> ``"macs75"``, ``"filters:0.8"`` -> ``"filters80"``.

    Example:
        >>> budget_tag("macs:0.75"), budget_tag("filters:0.8")
        ('macs75', 'filters80')
    """
    kind, value = budget.split(":")
    return f"{kind}{round(float(value) * 100):d}"


def lr_tag(lr: float) -> str:
    """``0.003`` -> ``"lr0.003"``.

    Example:
        >>> lr_tag(0.03)
        'lr0.03'
    """
    return f"lr{lr:g}"


@dataclasses.dataclass(frozen=True)
class RunKey:
    """One run: a tuning run (held-out accuracy at one learning rate, seed 0) or a final run (test accuracy)."""

    net: str
    budget: str
    arm: str
    seed: int
    lr: float
    phase: str  # "tune" or "final"

    def relpath(self) -> str:
        return (f"{self.net}/{budget_tag(self.budget)}/{self.arm}/"
                f"{self.phase}_{lr_tag(self.lr)}_seed{self.seed}.json")
