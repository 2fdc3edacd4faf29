"""Procedural dynamic objects built from Gaussian primitives.

An object is a set of rigid *parts* (ellipsoidal shells covered with small Gaussians, textured by
a procedural pattern) attached at pivots; each part follows its own motion (a rotation about its
pivot and a translation as functions of time), optionally with a non-rigid radial morph, and the
whole object follows a global motion. Everything is drawn from ``torch.Generator(seed)``, so an
object (and every image rendered from it) is a deterministic function of ``(family, seed, n)``.

Families (distinct motions): ``hopper`` (hopping with squash), ``pendulum`` (swinging),
``top`` (spinning with precession), ``waver`` (arm waving), ``ball`` (bouncing with squash and
stretch), ``walker`` (four legs stepping, body bobbing), ``bird`` (wings flapping), ``blob``
(morphing surface).

World frame: z up, object centred at the origin inside a radius of about 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

from orster4d.quaternions import axis_angle_to_quat, quat_mul, quat_rotate

FAMILIES = ("hopper", "pendulum", "top", "waver", "ball", "walker", "bird", "blob")

# Words of the generated text prompts (``object_prompt``): what each family does, and each texture.
FAMILY_ACTIONS = {"hopper": "hopping", "pendulum": "swinging", "top": "spinning", "waver": "waving its arm",
                  "ball": "bouncing", "walker": "walking", "bird": "flapping its wings", "blob": "morphing"}
PATTERN_WORDS = {"stripes": "striped", "checker": "checkered", "rings": "ringed", "spots": "spotted"}

# A motion maps times [T] to (axis-angle rotation [T, 3], translation [T, 3]).
Motion = Callable[[torch.Tensor], tuple]


def _still(t: torch.Tensor):
    z = torch.zeros(t.shape[0], 3, dtype=t.dtype)
    return z, z.clone()


@dataclass
class Part:
    """An ellipsoidal shell of Gaussians.

    ``offset`` places the shell's centre relative to ``pivot`` (both in the object frame at rest);
    ``motion`` rotates the part about ``pivot`` and translates it; ``morph`` (optional) maps
    (unit directions [P, 3], times [T]) to radial factors [T, P].
    """

    radii: tuple
    pivot: tuple
    offset: tuple
    colors: tuple  # two RGB colours mixed by the pattern
    pattern: str  # "stripes", "checker", "rings" or "spots"
    frequency: float
    motion: Motion = _still
    morph: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    weight: float = 1.0


@dataclass
class ProceduralObject:
    """A dynamic object; :meth:`gaussians` gives its Gaussians at any times."""

    family: str
    seed: int
    parts: List[Part]
    global_motion: Motion = _still
    num_gaussians: int = 4000
    _cache: Dict = field(default_factory=dict, repr=False)

    def _rest(self):
        """Per-part rest-state samples: unit directions, colours and base scales (cached)."""
        if "rest" in self._cache:
            return self._cache["rest"]
        g = torch.Generator().manual_seed(self.seed * 7919 + 17)
        areas = torch.tensor([_ellipsoid_area(p.radii) * p.weight for p in self.parts])
        counts = (areas / areas.sum() * self.num_gaussians).floor().long().clamp_min(8)
        rest = []
        for part, n in zip(self.parts, counts.tolist()):
            d = torch.randn(n, 3, generator=g)
            d = d / d.norm(dim=-1, keepdim=True)
            radii = torch.tensor(part.radii)
            local = d * radii
            tex = _pattern(part.pattern, local / radii.max(), part.frequency)
            c1, c2 = torch.tensor(part.colors[0]), torch.tensor(part.colors[1])
            col = c1 * (1 - tex[:, None]) + c2 * tex[:, None]
            spacing = math.sqrt(_ellipsoid_area(part.radii) / n)
            scale = torch.full((n, 3), 0.75 * spacing)
            # flatten along the surface normal so the shell looks like a surface
            normal = d / radii
            normal = normal / normal.norm(dim=-1, keepdim=True)
            quat = _quat_from_z_to(normal)
            scale[:, 2] = 0.2 * spacing
            rest.append((d, col, scale, quat))
        self._cache["rest"] = rest
        return rest

    def gaussians(self, times: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Gaussians at normalised ``times [T]`` in [0, 1].

        Returns ``means [T, N, 3]``, ``quats [T, N, 4]``, ``scales [T, N, 3]`` (activated),
        ``opacities [N]`` and ``colors [N, 3]`` (RGB in [0, 1]), float32 on the CPU.
        """
        times = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
        T = times.shape[0]
        g_aa, g_tr = self.global_motion(times)
        g_q = axis_angle_to_quat(g_aa)  # [T, 4]
        means, quats, scales, colors = [], [], [], []
        for part, (d, col, scale, quat) in zip(self.parts, self._rest()):
            radii = torch.tensor(part.radii)
            local = d * radii  # [P, 3]
            s = scale.expand(T, -1, -1)
            if part.morph is not None:
                f = part.morph(d, times)  # [T, P]
                local = local[None] * f[..., None]
                s = s * f[..., None]
            else:
                local = local.expand(T, -1, -1)
            aa, tr = part.motion(times)
            q = axis_angle_to_quat(aa)[:, None, :]  # [T, 1, 4]
            p = quat_rotate(q, local + torch.tensor(part.offset)) + torch.tensor(part.pivot) + tr[:, None, :]
            p = quat_rotate(g_q[:, None, :], p) + g_tr[:, None, :]
            qq = quat_mul(g_q[:, None, :], quat_mul(q, quat[None]))
            means.append(p)
            quats.append(qq)
            scales.append(s)
            colors.append(col)
        colors = torch.cat(colors, 0).clamp(0, 1)
        return {
            "means": torch.cat(means, 1).contiguous(),
            "quats": torch.cat(quats, 1).contiguous(),
            "scales": torch.cat(scales, 1).contiguous(),
            "opacities": torch.full((colors.shape[0],), 0.95),
            "colors": colors,
        }


def _quat_from_z_to(n: torch.Tensor) -> torch.Tensor:
    """Quaternions ``[P, 4]`` rotating +z onto unit vectors ``n [P, 3]``."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(n)
    w = 1.0 + (z * n).sum(-1, keepdim=True)
    xyz = torch.linalg.cross(z, n, dim=-1)
    q = torch.cat([w, xyz], -1)
    flip = w[:, 0] < 1e-6  # n == -z: rotate 180 degrees about x
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return q / q.norm(dim=-1, keepdim=True)


def _ellipsoid_area(r) -> float:
    a, b, c = r
    p = 1.6075
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def _pattern(kind: str, x: torch.Tensor, freq: float) -> torch.Tensor:
    """Texture weight in [0, 1] at local positions ``x [P, 3]`` (roughly unit scale)."""
    if kind == "stripes":
        v = torch.sin(freq * math.pi * x[:, 2])
    elif kind == "checker":
        v = torch.sin(freq * math.pi * x[:, 0]) * torch.sin(freq * math.pi * x[:, 1]) * torch.sin(freq * math.pi * x[:, 2] + 0.5)
    elif kind == "rings":
        v = torch.sin(freq * math.pi * x[:, :2].norm(dim=-1))
    elif kind == "spots":
        v = torch.sin(freq * math.pi * x[:, 0] + 1.3) * torch.sin(freq * math.pi * x[:, 1] + 0.4) - 0.3
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    return torch.sigmoid(6.0 * v)


# ---------------------------------------------------------------------- motions
def _rot(axis, amp, freq, phase=0.0, bias=0.0):
    axis_t = torch.tensor(axis, dtype=torch.float32)
    axis_t = axis_t / axis_t.norm()

    def motion(t):
        ang = bias + amp * torch.sin(2 * math.pi * freq * t + phase)
        return ang[:, None] * axis_t, torch.zeros(t.shape[0], 3)
    return motion


def _hop(height, freq):
    def motion(t):
        z = height * torch.sin(math.pi * freq * t).abs()
        return torch.zeros(t.shape[0], 3), torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], -1)
    return motion


def _spin(turns, tilt):
    def motion(t):
        yaw = 2 * math.pi * turns * t
        # spin about z, then tilt the spin axis (precession) by composing axis-angles approximately
        spin = torch.stack([torch.zeros_like(t), torch.zeros_like(t), yaw], -1)
        prec = tilt * torch.stack([torch.cos(2 * math.pi * t), torch.sin(2 * math.pi * t), torch.zeros_like(t)], -1)
        q = quat_mul(axis_angle_to_quat(prec), axis_angle_to_quat(spin))
        q = q / q.norm(dim=-1, keepdim=True)
        w = q[:, :1].clamp(-1, 1)
        angle = 2 * torch.acos(w)
        axis = q[:, 1:] / torch.sin(angle / 2).clamp_min(1e-8)
        return axis * angle, torch.zeros(t.shape[0], 3)
    return motion


def _compose(*motions):
    def motion(t):
        aa = torch.zeros(t.shape[0], 3)
        tr = torch.zeros(t.shape[0], 3)
        for m in motions:
            a, b = m(t)
            aa = aa + a
            tr = tr + b
        return aa, tr
    return motion


def _squash(amount, freq):
    """Radial morph that flattens z and widens x, y periodically (squash and stretch)."""
    def morph(d, t):
        s = amount * torch.cos(2 * math.pi * freq * t)[:, None]  # [T, 1]
        fz = 1 - s
        fxy = 1 + 0.5 * s
        # factor along each direction for an axis-aligned stretch, expressed radially
        return torch.sqrt((d[None, :, 0] * fxy) ** 2 + (d[None, :, 1] * fxy) ** 2 + (d[None, :, 2] * fz) ** 2)
    return morph


def _wobble(amp, lobes, freq):
    def morph(d, t):
        theta = torch.atan2(d[:, 1], d[:, 0])
        phi = torch.acos(d[:, 2].clamp(-1, 1))
        w = torch.sin(lobes * theta[None] + 2 * math.pi * freq * t[:, None]) * torch.sin(2 * phi[None])
        return 1 + amp * w
    return morph


# ---------------------------------------------------------------------- families
def make_object(family: str, seed: int = 0, num_gaussians: int = 4000) -> ProceduralObject:
    """A deterministic object of ``family`` (one of :data:`FAMILIES`) from ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if num_gaussians < 16:
        raise ValueError(f"num_gaussians must be >= 16, got {num_gaussians}")
    g = torch.Generator().manual_seed(int(seed) * 1000003 + FAMILIES.index(family))

    def u(lo, hi):
        return float(lo + (hi - lo) * torch.rand((), generator=g))

    def color():
        return tuple(float(c) for c in 0.15 + 0.8 * torch.rand(3, generator=g))

    def pat():
        return ("stripes", "checker", "rings", "spots")[int(torch.randint(0, 4, (), generator=g))]

    def part(radii, pivot=(0, 0, 0), offset=(0, 0, 0), **kw):
        return Part(radii=tuple(radii), pivot=tuple(pivot), offset=tuple(offset), colors=(color(), color()),
                    pattern=pat(), frequency=u(2.0, 5.0), **kw)

    u(1, 3)  # a draw kept so that every later draw (shapes, colours, amplitudes) of a seed is unchanged
    # One cycle of the slow motions per clip; no component exceeds two cycles, so a 16-frame clip
    # samples every motion at 8 or more frames per cycle (held-out times can be interpolated).
    freq = 1.0
    parts: List[Part]
    glob: Motion = _still
    if family == "hopper":
        r = u(0.35, 0.45)
        parts = [part((r, r * 0.9, r * 1.1), offset=(0, 0, -0.35), morph=_squash(0.15, 2 * freq)),
                 part((r * 0.6,) * 3, offset=(0, -0.1, 0.3)),
                 part((0.07, 0.05, 0.25), pivot=(-0.15, -0.1, 0.5), offset=(0, 0, 0.2),
                      motion=_rot((0, 1, 0), 0.3, 2 * freq)),
                 part((0.07, 0.05, 0.25), pivot=(0.15, -0.1, 0.5), offset=(0, 0, 0.2),
                      motion=_rot((0, 1, 0), 0.3, 2 * freq, math.pi))]
        glob = _compose(_hop(u(0.25, 0.4), 2 * freq), lambda t: (torch.zeros(t.shape[0], 3),
                                                                 torch.tensor([0, 0, -0.3]).expand(t.shape[0], 3)))
    elif family == "pendulum":
        parts = [part((0.5, 0.08, 0.06), offset=(0, 0, 0.75)),
                 part((0.04, 0.04, 0.35), pivot=(0, 0, 0.7), offset=(0, 0, -0.35),
                      motion=_rot((0, 1, 0), u(0.5, 0.8), freq)),
                 part((0.22, 0.22, 0.22), pivot=(0, 0, 0.7), offset=(0, 0, -0.9),
                      motion=_rot((0, 1, 0), u(0.5, 0.8), freq), weight=2.0)]
        # rod and bob share one motion: make them identical
        parts[2].motion = parts[1].motion
    elif family == "top":
        parts = [part((0.5, 0.5, 0.18), offset=(0, 0, 0.1), weight=2.0),
                 part((0.25, 0.25, 0.35), offset=(0, 0, -0.3)),
                 part((0.06, 0.06, 0.2), offset=(0, 0, 0.4))]
        glob = _spin(u(0.5, 1.5), u(0.1, 0.25))
    elif family == "waver":
        parts = [part((0.3, 0.22, 0.5), offset=(0, 0, -0.2), weight=1.5),
                 part((0.2, 0.2, 0.2), offset=(0, 0, 0.5)),
                 part((0.07, 0.07, 0.3), pivot=(0.3, 0, 0.15), offset=(0.0, 0, 0.3),
                      motion=_rot((0, 1, 0), 0.6, 2 * freq, bias=0.7)),
                 part((0.07, 0.07, 0.3), pivot=(-0.3, 0, 0.15), offset=(0.0, 0, -0.3),
                      motion=_rot((0, 1, 0), 0.1, freq))]
    elif family == "ball":
        r = u(0.3, 0.4)
        parts = [part((r, r, r), morph=_squash(0.2, 2 * freq), weight=2.0)]
        glob = _compose(_hop(u(0.6, 0.8), 2 * freq), _rot((1, 0, 0), 0.0, 1.0),
                        lambda t: (torch.zeros(t.shape[0], 3), torch.tensor([0, 0, -0.5]).expand(t.shape[0], 3)))
    elif family == "walker":
        legs = []
        for i, (x, y) in enumerate(((0.3, 0.15), (0.3, -0.15), (-0.3, 0.15), (-0.3, -0.15))):
            phase = math.pi * ((i + (i // 2)) % 2)
            legs.append(part((0.06, 0.06, 0.25), pivot=(x, y, -0.1), offset=(0, 0, -0.25),
                             motion=_rot((0, 1, 0), 0.5, 2 * freq, phase)))
        parts = [part((0.5, 0.25, 0.2), offset=(0, 0, 0.05), weight=1.5),
                 part((0.15, 0.13, 0.13), offset=(0.55, 0, 0.25),
                      motion=_rot((0, 0, 1), 0.2, freq))] + legs

        def bob(t, f=2 * freq):
            z = 0.04 * torch.sin(2 * math.pi * f * t)
            x = 0.2 * torch.sin(2 * math.pi * t)
            return torch.zeros(t.shape[0], 3), torch.stack([x, torch.zeros_like(x), z], -1)
        glob = bob
    elif family == "bird":
        parts = [part((0.35, 0.15, 0.15), weight=1.5),
                 part((0.12, 0.12, 0.12), offset=(0.4, 0, 0.1)),
                 part((0.25, 0.5, 0.03), pivot=(0, 0.12, 0.05), offset=(0, 0.45, 0),
                      motion=_rot((1, 0, 0), 0.7, 2 * freq)),
                 part((0.25, 0.5, 0.03), pivot=(0, -0.12, 0.05), offset=(0, -0.45, 0),
                      motion=_rot((1, 0, 0), -0.7, 2 * freq))]
        glob = _compose(_rot((0, 0, 1), 0.3, freq), lambda t: (
            torch.zeros(t.shape[0], 3),
            torch.stack([torch.zeros_like(t), torch.zeros_like(t), 0.1 * torch.sin(4 * math.pi * freq * t)], -1)))
    else:  # blob
        parts = [part((0.55, 0.55, 0.55), morph=_wobble(u(0.15, 0.25), int(u(2, 5)), freq), weight=3.0)]
    return ProceduralObject(family=family, seed=int(seed), parts=parts, global_motion=glob,
                            num_gaussians=int(num_gaussians))


def color_name(rgb) -> str:
    """A plain English name for an RGB colour in [0, 1]: grey shades by value, else by hue
    (``"dark "`` before it when the colour is dark)."""
    import colorsys

    h, sat, v = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    if sat < 0.25:
        return "white" if v > 0.8 else ("grey" if v > 0.4 else "black")
    hue = h * 360.0
    name = next(n for bound, n in ((15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"),
                                   (255, "blue"), (290, "purple"), (335, "pink"), (361, "red")) if hue < bound)
    return f"dark {name}" if v < 0.4 else name


def object_prompt(obj: ProceduralObject) -> str:
    """The text prompt of a procedural object, e.g. ``"a striped red hopper hopping"``: the texture and
    first colour of its largest part, its family and its motion (deterministic from the object)."""
    main = max(obj.parts, key=lambda p: _ellipsoid_area(p.radii) * p.weight)
    return (f"a {PATTERN_WORDS[main.pattern]} {color_name(main.colors[0])} {obj.family} "
            f"{FAMILY_ACTIONS[obj.family]}")
