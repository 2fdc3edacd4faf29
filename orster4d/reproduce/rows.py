"""The rows of paper Tables 1-3 at small scale, as data.

A :class:`Row` names its table and says

- which training stages it runs: 1-4, less ``skip_stages`` (``(3,)``: stage 4 starts from stage 2's
  final checkpoint, its merged unified 4D-UNet; ``(2, 3)``: stage 4 starts from the stage-1 UNet);
  generation always needs stage 4 (the condition adapters);
- the config overrides of each stage (``{stage: {"key.sub": value}}``, the ``orster4d-train --set``
  keys) and where stage 2 starts from (``stage2_init``: ``"stage1"``, the row's own preliminary 4D
  model, or ``"spatial_teacher"``, the 3D-aware model trained on the static-3D set);
- what is scored (``score``): ``"video"``, the generated orbital videos against the true ones,
  and/or ``"asset"``, the 4D assets built from them (``orster4d-construct`` on the generated video,
  its static video V' and its prior tokens) against the multi-view ground truth on held-out views
  and times; ``construct`` holds the row's construction overrides (``ConstructConfig`` fields, on
  top of the preset's schedule);
- whether it is trained with every protocol seed (Table 1 rows and w/o Orster) or the first only.

A row whose switch the package lacks would carry ``missing`` (the reason) and be reported as "not
expressible yet", never dropped; every row of the tables is expressible today.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

STAGES = (1, 2, 3, 4)
STAGE2_INITS = ("stage1", "spatial_teacher")
SKIPPABLE = ((), (3,), (2, 3))  # stage 4 reads stage 3's, stage 2's final or stage 1's checkpoint
SCORES = ("video", "asset")


@dataclass(frozen=True)
class Row:
    """One row of a table: ``name`` (unique), ``table`` (1, 2 or 3; 4 for the scarcity curve),
    ``overrides`` per stage, ``stage2_init``, ``skip_stages``, ``score``, ``construct``,
    ``all_seeds``, ``missing`` (None when expressible), ``note`` (what the row means, caveats),
    ``scarce4d`` (train on the first N 4D objects). See the module docstring."""

    name: str
    table: int
    overrides: Dict[int, Dict[str, object]] = field(default_factory=dict)
    stage2_init: str = "stage1"
    skip_stages: Tuple[int, ...] = ()
    score: Tuple[str, ...] = ("video",)
    construct: Dict[str, object] = field(default_factory=dict)
    all_seeds: bool = False
    missing: Optional[str] = None
    note: Optional[str] = None
    scarce4d: Optional[int] = None

    def __post_init__(self):
        if self.table not in (1, 2, 3, 4):
            raise ValueError(f"row {self.name!r}: table must be 1, 2, 3 (or 4: scarcity curve), got {self.table}")
        if self.stage2_init not in STAGE2_INITS:
            raise ValueError(f"row {self.name!r}: stage2_init must be one of {STAGE2_INITS}, got {self.stage2_init!r}")
        if tuple(self.skip_stages) not in SKIPPABLE:
            raise ValueError(f"row {self.name!r}: skip_stages must be one of {SKIPPABLE}, got {self.skip_stages!r}")
        bad = [s for s in self.overrides if s not in self.stages]
        if bad:
            raise ValueError(f"row {self.name!r}: overrides for stages it does not train {bad} (trains {self.stages})")
        if not self.score or any(s not in SCORES for s in self.score) or len(set(self.score)) != len(self.score):
            raise ValueError(f"row {self.name!r}: score must name some of {SCORES} once each, got {self.score!r}")
        if self.construct and "asset" not in self.score:
            raise ValueError(f"row {self.name!r}: construct overrides given, but the row scores no assets")
        if self.construct:
            from orster4d.reproduce.scoring import check_construct_settings

            check_construct_settings(self.construct, f"row {self.name!r}")

    @property
    def stages(self) -> Tuple[int, ...]:
        """The training stages the row runs, in order."""
        return tuple(s for s in STAGES if s not in self.skip_stages)

    @property
    def expressible(self) -> bool:
        return self.missing is None

    def stage_overrides(self, stage: int) -> Dict[str, object]:
        return dict(self.overrides.get(stage, {}))


_NO_ORSTER_NOTE = ("orster.weight=0: no Orster transfer in stage 2 (its loss is L_ldm + beta KL); the teachers are "
                   "neither loaded nor run")
_BOTH = ("video", "asset")
_ASSET = ("asset",)
_OURS_VIDEO = "the diffusion model and generated videos are ours (shared runs); only the construction differs: "

ROWS: List[Row] = [
    # -- Table 1: ours vs the single-channel baseline vs stage 1 only (image-, text- and 3D-to-4D)
    Row("ours", 1, score=_BOTH, all_seeds=True),
    Row("single-channel (Diffusion4D-like)", 1, overrides={2: {"model.mode": "no_disentangle", "orster.weight": 0.0}},
        score=_BOTH, all_seeds=True,
        note="one channel on Z4D and no Orster in stage 2, then stages 3-4 as ours; " + _NO_ORSTER_NOTE),
    Row("stage 1 only", 1, skip_stages=(2, 3), score=_BOTH, all_seeds=True,
        note="preliminary 4D training (stage 1) only, then stage 4 directly on the stage-1 UNet: a stage-1 "
             "model has no condition adapters, so stage 4 (conditioning, the same steps as ours) is what lets it "
             "be conditioned on a held-out image, prompt or static video; no Orster transfer (2), no "
             "consistency stage (3)"),
    # -- Table 2: disentangling and the two channels; construction prior tokens (Eq. 8)
    Row("w/o disentangling", 2, overrides={2: {"model.mode": "no_disentangle"}}),
    Row("w/o spatial channel", 2, overrides={2: {"model.mode": "no_spatial"}}),
    Row("w/o temporal channel", 2, overrides={2: {"model.mode": "no_temporal"}}),
    Row("construction w/o spatial prior tokens", 2, score=_ASSET, construct={"prior_sides": ["temporal"]},
        note=_OURS_VIDEO + "the ST-HexPlane ignores the spatial prior tokens O_s (prior_sides=temporal: the "
                           "spatial cross-attention reads one zero token, a constant)"),
    Row("construction w/o temporal prior tokens", 2, score=_ASSET, construct={"prior_sides": ["spatial"]},
        note=_OURS_VIDEO + "the ST-HexPlane ignores the temporal prior tokens O_t (prior_sides=spatial: the "
                           "temporal cross-attention reads one zero token, a constant)"),
    # -- Table 3: the transfer and the stages
    Row("w/o preliminary 4D", 3, stage2_init="spatial_teacher",
        note="stage 2 starts from the 3D-aware model (the spatial teacher, trained on the static-3D set) instead "
             "of the row's stage-1 model: the pretrained backbone without preliminary 4D training"),
    Row("w/o Orster", 3, overrides={2: {"orster.weight": 0.0}}, all_seeds=True, note=_NO_ORSTER_NOTE),
    Row("lambda_o = 0", 3, overrides={2: {"orster.lambda_o": 0.0}}),
    Row("lambda_o = 1", 3, overrides={2: {"orster.lambda_o": 1.0}}),
    Row("w/o Gaussian kernel", 3, overrides={2: {"orster.options.use_kernel": False}}),
    Row("w/o spatial attention", 3, overrides={2: {"orster.options.spatial_attention": False}}),
    Row("w/o temporal attention", 3, overrides={2: {"orster.options.temporal_attention": False}}),
    Row("w/o consistency stage", 3, skip_stages=(3,),
        note="stage 4 starts from stage 2's final checkpoint (its merged unified 4D-UNet) instead of stage 3's"),
    Row("w/o construction training", 3, score=_ASSET, construct={"fine_iters": 0},
        note=_OURS_VIDEO + "no fine (deformation) phase, so the asset is the static Gaussians of the coarse phase "
                           "(fitted to the generated static video V', or to the generated video without one) "
                           "with an identity deformation field, scored on held-out views and times"),
]


def scarcity_rows(sizes: Sequence[int]) -> List[Row]:
    """Ours and the single-channel baseline trained on the first ``n`` 4D objects, for each size."""
    base = {r.name: r for r in ROWS}
    out = []
    for n in sizes:
        for name in ("ours", "single-channel (Diffusion4D-like)"):
            r = base[name]
            out.append(Row(f"{name} @ 4D n={int(n)}", 4, overrides=r.overrides, note=r.note, scarce4d=int(n)))
    return out


def find_rows(names: Optional[Sequence[str]], extra: Sequence[Row] = ()) -> List[Row]:
    """The rows named (all of :data:`ROWS` plus ``extra`` when ``names`` is None); an unknown name
    is a ValueError listing the known ones."""
    pool = {r.name: r for r in list(ROWS) + list(extra)}
    if not names:
        return list(pool.values())
    unknown = [n for n in names if n not in pool]
    if unknown:
        raise ValueError(f"--rows: unknown row(s) {unknown}; known rows: {list(pool)}")
    return [pool[n] for n in dict.fromkeys(names)]
