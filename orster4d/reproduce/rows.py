"""The rows of paper Tables 1-3 at small scale, as data.

A :class:`Row` names its table, the stages it trains (always 1-4 today: generation needs a
stage-4 checkpoint), the config overrides of each stage (``{stage: {"key.sub": value}}``, the
``orster4d-train --set`` keys), where stage 2 starts from (``stage2_init``: ``"stage1"``, the
row's own preliminary 4D model, or ``"spatial_teacher"``, the 3D-aware model trained on the
static-3D set) and whether it is trained with every protocol seed (Table 1 rows and w/o Orster)
or the first seed only. A row whose switch the package does not have yet carries
``missing``, the reason; the protocol reports it as "not expressible yet", never drops it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

STAGES = (1, 2, 3, 4)
STAGE2_INITS = ("stage1", "spatial_teacher")


@dataclass(frozen=True)
class Row:
    """One row of a table: ``name`` (unique), ``table`` (1, 2 or 3), ``overrides`` per stage,
    ``stage2_init``, ``all_seeds``, ``missing`` (None when expressible), ``note`` (caveats)."""

    name: str
    table: int
    overrides: Dict[int, Dict[str, object]] = field(default_factory=dict)
    stage2_init: str = "stage1"
    all_seeds: bool = False
    missing: Optional[str] = None
    note: Optional[str] = None
    scarce4d: Optional[int] = None  # train on the first N objects of the 4D set (scarcity curve)

    def __post_init__(self):
        if self.table not in (1, 2, 3, 4):
            raise ValueError(f"row {self.name!r}: table must be 1, 2, 3 (or 4: scarcity curve), got {self.table}")
        if self.stage2_init not in STAGE2_INITS:
            raise ValueError(f"row {self.name!r}: stage2_init must be one of {STAGE2_INITS}, got {self.stage2_init!r}")
        bad = [s for s in self.overrides if s not in STAGES]
        if bad:
            raise ValueError(f"row {self.name!r}: overrides for unknown stages {bad}")

    @property
    def expressible(self) -> bool:
        return self.missing is None

    def stage_overrides(self, stage: int) -> Dict[str, object]:
        return dict(self.overrides.get(stage, {}))


_NO_ORSTER_NOTE = ("orster.weight=0: L_orster does not reach the student (its gradient is exactly that of "
                   "L_ldm + beta KL), but stage 2 still loads and runs the teachers; a switch that skips "
                   "them is missing (it would save compute, not change the model)")

_CONSTRUCT_MISSING = ("the protocol does not build 4D assets yet, and orster4d-construct reads both prior token "
                      "sets (a priors file needs 'spatial' and 'temporal'): a per-side switch for Eq. 8 is missing")

ROWS: List[Row] = [
    # -- Table 1: ours vs the single-channel baseline vs stage 1 only (image-, text- and 3D-to-4D)
    Row("ours", 1, all_seeds=True),
    Row("single-channel (Diffusion4D-like)", 1, overrides={2: {"model.mode": "no_disentangle", "orster.weight": 0.0}},
        all_seeds=True, note="one channel on Z4D and no Orster in stage 2, then stages 3-4 as ours; " + _NO_ORSTER_NOTE),
    Row("stage 1 only", 1, missing="a stage-1 checkpoint has no condition adapters, so it cannot be conditioned on a "
                                   "held-out image, prompt or static video; stage 4 reads only a stage-3 checkpoint "
                                   "(its merged unified UNet), so stage 4 cannot follow stage 1 directly"),
    # -- Table 2: disentangling and the two channels; construction prior tokens
    Row("w/o disentangling", 2, overrides={2: {"model.mode": "no_disentangle"}}),
    Row("w/o spatial channel", 2, overrides={2: {"model.mode": "no_spatial"}}),
    Row("w/o temporal channel", 2, overrides={2: {"model.mode": "no_temporal"}}),
    Row("construction w/o spatial prior tokens", 2, missing=_CONSTRUCT_MISSING),
    Row("construction w/o temporal prior tokens", 2, missing=_CONSTRUCT_MISSING),
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
    Row("w/o consistency stage", 3, missing="stage 4 accepts only a stage-3 checkpoint (the stage number is checked), "
                                            "although stage 2's final checkpoint holds the merged unified UNet "
                                            "stage 4 trains; letting stage 4 start from stage 2 would express it"),
    Row("w/o construction training", 3, missing="not defined by the package yet; proposed: the 4D asset built from "
                                                "the generated orbital video without the fine (deformation) phase, "
                                                "scored on held-out views and times; the protocol builds no assets yet"),
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
