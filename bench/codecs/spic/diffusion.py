"""SPIC's diffusion sampler: linear β schedule, respaced steps, learned-range variance,
classifier-free guidance with a zeroed label map.

Images live in [-1, 1]. The official inference (``image_sample.py`` of frapez1/SPIC) uses
1000 training steps, ``timestep_respacing "100"`` and ``max_iter_time 200``: of the 100
evenly spaced steps, those ≤ 200 are kept → 20 steps
``0, 10, 20, 30, 40, 50, 61, 71, 81, 91, 101, 111, 121, 131, 141, 151, 161, 172, 182, 192``.
Sampling starts from the bilinearly upsampled coarse image itself, taken as x at t = 192
(no noise is added), and runs ancestral (DDPM) steps down to t = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# model(x_t [B,3,H,W], t [B] original timesteps, labels one-hot [B,C,H,W]) -> [B, 6, H, W]
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(num_steps: int = 1000) -> np.ndarray:
    """Ho et al.'s linear schedule β_t from 1e-4 to 0.02, scaled by 1000 / num_steps (float64)."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)


def space_timesteps(num_steps: int, section_counts: str | Sequence[int]) -> list[int]:
    """Timesteps kept from a ``num_steps`` process, guided-diffusion's ``timestep_respacing``.

    The process is cut into ``len(section_counts)`` near-equal sections (the first
    ``num_steps % len`` get one more step); section i keeps ``section_counts[i]`` steps at a
    fractional stride (size − 1)/(count − 1), each index rounded with Python's ``round``
    after accumulating the stride (so the same float rounding as the reference code).
    Returns the sorted list.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            want = int(section_counts[4:])
            for stride in range(1, num_steps):
                if len(range(0, num_steps, stride)) == want:
                    return list(range(0, num_steps, stride))
            raise ValueError(f"cannot take exactly {want} steps of {num_steps} with an integer stride")
        counts = [int(c) for c in section_counts.split(",")]
    else:
        counts = [int(c) for c in section_counts]
    base, extra = divmod(num_steps, len(counts))
    kept: set[int] = set()
    start = 0
    for i, count in enumerate(counts):
        size = base + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot take {count} steps from a section of {size}")
        step = 1.0 if count <= 1 else (size - 1) / (count - 1)
        pos = 0.0
        for _ in range(count):
            kept.add(start + round(pos))
            pos += step
        start += size
    return sorted(kept)


def official_timesteps(num_steps: int = 1000, respacing: str = "100", max_t: int = 200) -> list[int]:
    """The kept timesteps of SPIC's inference: respaced, then only those ≤ ``max_t``."""
    return [t for t in space_timesteps(num_steps, respacing) if t <= max_t]


@dataclass
class RespacedSchedule:
    """The diffusion restricted to ``timesteps`` (ascending original indices).

    Step i of the respaced chain has β'_i = 1 − ᾱ(t_i)/ᾱ(t_{i−1}) (ᾱ(t_{−1}) = 1), so that
    its cumulative products equal the original ᾱ at the kept timesteps.
    """

    timesteps: list[int]
    betas: np.ndarray

    @classmethod
    def from_base(cls, base_betas: np.ndarray, timesteps: Sequence[int]) -> RespacedSchedule:
        ts = sorted(int(t) for t in timesteps)
        if not ts or ts[0] < 0 or ts[-1] >= len(base_betas):
            raise ValueError(f"timesteps must lie in [0, {len(base_betas)}), got {ts[:3]}…")
        alpha_bar = np.cumprod(1.0 - np.asarray(base_betas, dtype=np.float64))
        betas, last = [], 1.0
        for t in ts:
            betas.append(1.0 - alpha_bar[t] / last)
            last = alpha_bar[t]
        return cls(ts, np.asarray(betas, dtype=np.float64))

    def __post_init__(self) -> None:
        b = self.betas
        self.alpha_bar = np.cumprod(1.0 - b)
        self.alpha_bar_prev = np.append(1.0, self.alpha_bar[:-1])
        self.posterior_variance = b * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        # the posterior variance is 0 at step 0: its log is clipped to that of step 1
        self.posterior_log_var_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:])) \
            if len(b) > 1 else np.log(np.maximum(self.posterior_variance, 1e-20))
        self.coef_x0 = b * np.sqrt(self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        self.coef_xt = (1.0 - self.alpha_bar_prev) * np.sqrt(1.0 - b) / (1.0 - self.alpha_bar)

    def __len__(self) -> int:
        return len(self.timesteps)


def guided_output(model: Denoiser, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                  guidance: float) -> torch.Tensor:
    """Model output with classifier-free guidance on the ε channels (the first 3):
    ε = ε(∅) + s·(ε(labels) − ε(∅)), ∅ = all-zero label map; variance channels from the
    conditional pass. ``guidance`` ≤ 1 → the conditional output alone (as the reference code).
    Both passes run as one batch."""
    if guidance <= 1.0:
        return model(x, t, labels)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.zeros_like(labels)]))
    cond, uncond = both.chunk(2)
    c = x.shape[1]
    eps = uncond[:, :c] + guidance * (cond[:, :c] - uncond[:, :c])
    return torch.cat([eps, cond[:, c:]], dim=1)


def _at(arr: np.ndarray, i: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(float(arr[i]), dtype=torch.float32, device=like.device)


def p_sample_step(schedule: RespacedSchedule, out: torch.Tensor, x: torch.Tensor, i: int,
                  noise: torch.Tensor | None, clip: bool = True) -> torch.Tensor:
    """One ancestral step from respaced index ``i`` given the model output [ε | v].

    x̂₀ = √(1/ᾱ)·x − √(1/ᾱ − 1)·ε (clipped to [-1, 1]); mean = c₀·x̂₀ + c_t·x;
    log σ² = f·log β'_i + (1 − f)·log σ̃²_i with f = (v + 1)/2 (learned range);
    no noise at i = 0.
    """
    c = x.shape[1]
    eps = out[:, :c].float()
    x0 = _at(np.sqrt(1.0 / schedule.alpha_bar), i, x) * x - _at(np.sqrt(1.0 / schedule.alpha_bar - 1.0), i, x) * eps
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    mean = _at(schedule.coef_x0, i, x) * x0 + _at(schedule.coef_xt, i, x) * x
    if i == 0 or noise is None:
        return mean
    if out.shape[1] == 2 * c:
        frac = (out[:, c:].float() + 1.0) / 2.0
        log_var = frac * _at(np.log(schedule.betas), i, x) + (1.0 - frac) * _at(schedule.posterior_log_var_clipped, i, x)
    else:  # fixed "large" variance (no learned sigma)
        large = np.append(schedule.posterior_variance[1], schedule.betas[1:])
        log_var = _at(np.log(large), i, x).expand_as(x)
    return mean + torch.exp(0.5 * log_var) * noise


def sample(model: Denoiser, x_start: torch.Tensor, labels: torch.Tensor, schedule: RespacedSchedule, *,
           guidance: float = 1.5, generator: torch.Generator | None = None, clip: bool = True,
           on_step: Callable[[int, int], None] | None = None,
           noises: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Run the respaced chain from ``x_start`` (taken as x at the last kept timestep) to t = 0.

    Noise is drawn on the CPU from ``generator`` (so a seed gives the same result on any
    device) in the order of the steps. ``on_step(i, t)`` is called before each model call
    with the respaced index and the original timestep. ``noises``: the ``len(schedule) − 1``
    noise tensors to use instead of drawing them (step order, noises[k] at respaced index
    ``len − 1 − k``), e.g. those an other implementation drew. Returns x₀ in [-1, 1] (float32).
    """
    x = x_start.float()
    b = x.shape[0]
    if noises is not None and len(noises) < len(schedule) - 1:
        raise ValueError(f"{len(schedule) - 1} noise tensors needed, got {len(noises)}")
    with torch.no_grad():
        for i in reversed(range(len(schedule))):
            t_orig = schedule.timesteps[i]
            if on_step is not None:
                on_step(i, t_orig)
            t = torch.full((b,), t_orig, dtype=torch.long, device=x.device)
            out = guided_output(model, x, t, labels, guidance)
            noise = None
            if i > 0 and noises is not None:
                noise = noises[len(schedule) - 1 - i].reshape(x.shape).to(x.device, torch.float32)
            elif i > 0:
                noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
            x = p_sample_step(schedule, out, x, i, noise, clip)
    return x
