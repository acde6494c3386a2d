"""Reference ER, HIO and OSS in numpy (float64), written from the published descriptions for the tests of
dps_exp/samplers/{er,hio,oss}.py and independent of them: the spectrum is kept centred (fftshift) as the measurement
is, the support is a pair of slices, the object-domain rules are written case by case, and OSS's filter is built on
the centred grid as in the authors' MATLAB code.

- ER (Gerchberg–Saxton; Fienup, Appl. Opt. 21, 1982): g_{k+1} = the projection of g'_k onto the object constraints.
- HIO (Fienup 1982): g_{k+1} = g'_k where g'_k meets the constraints, g_k − β g'_k off the support, and (our range
  [-1, 1] in place of positivity) g_k − β (g'_k − 1) above 1, g_k − β (g'_k + 1) below −1.
- OSS (Rodriguez et al., J. Appl. Cryst. 46, 2013, and their code): the HIO rule on the support; off it, the HIO
  quantity g_k − β g'_k of the whole grid low-passed by exp(−½ (k/α)²), α from 2 N to 0.2 N over equal stages,
  each stage restarting from its input of lowest Fourier error; the result is the best stage's.

Each returns the per-iteration estimates (the constraint projection of g'_k, on the support) and the result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These problems are tiny (24×24 grids): a second thread only waits on the first, the more so on a busy
    machine (measured: 120 ER iterations 0.13 s on one thread, 7.7 s on two, 2-core CPU under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Grid:
    """y (C, H', W') centred magnitudes of (C, H, W) images zero-padded by (ph, pw) pixels per side."""

    def __init__(self, y: np.ndarray, ph: int, pw: int):
        self.y = np.maximum(y, 0.0)
        self.ph, self.pw = ph, pw
        self.h, self.w = y.shape[-2] - 2 * ph, y.shape[-1] - 2 * pw
        self.inside = (slice(None), slice(ph, ph + self.h), slice(pw, pw + self.w))
        self.mask = np.zeros(y.shape, dtype=bool)
        self.mask[self.inside] = True

    def pad(self, image: np.ndarray) -> np.ndarray:
        return np.pad(image, ((0, 0), (self.ph, self.ph), (self.pw, self.pw)))

    def spectrum(self, g: np.ndarray) -> np.ndarray:
        return np.fft.fftshift(np.fft.fft2(g, norm="ortho"), axes=(-2, -1))

    def fourier(self, g: np.ndarray) -> np.ndarray:
        """g' : the measured magnitudes with g's phases, back in the object domain, real part."""
        G = self.spectrum(g)
        G = self.y * np.exp(1j * np.angle(G))
        return np.fft.ifft2(np.fft.ifftshift(G, axes=(-2, -1)), norm="ortho").real

    def project(self, g: np.ndarray) -> np.ndarray:
        out = np.zeros_like(g)
        out[self.inside] = np.clip(g[self.inside], -1.0, 1.0)
        return out

    def r_factor(self, out: np.ndarray) -> float:
        return np.abs(np.abs(self.spectrum(out)) - self.y).sum() / self.y.sum()

    def hio(self, g: np.ndarray, gp: np.ndarray, beta: float) -> np.ndarray:
        new = g - beta * gp  # off the support
        s = self.mask
        ok, high, low = s & (np.abs(gp) <= 1), s & (gp > 1), s & (gp < -1)
        new[ok] = gp[ok]
        new[high] = g[high] - beta * (gp[high] - 1)
        new[low] = g[low] - beta * (gp[low] + 1)
        return new


def er(grid: Grid, x0: np.ndarray, iterations: int) -> tuple[list[np.ndarray], np.ndarray]:
    g, outs = grid.pad(x0), []
    for _ in range(iterations):
        g = grid.project(grid.fourier(g))
        outs.append(g[grid.inside])
    return outs, outs[-1]


def hio(grid: Grid, x0: np.ndarray, iterations: int, beta: float) -> tuple[list[np.ndarray], np.ndarray]:
    g, outs = grid.pad(x0), []
    for _ in range(iterations):
        gp = grid.fourier(g)
        outs.append(grid.project(gp)[grid.inside])
        g = grid.hio(g, gp, beta)
    return outs, outs[-1]


def centred_gaussian(shape: tuple[int, int], alpha_r: float, alpha_c: float) -> np.ndarray:
    """The authors' kfilter on the fftshift-ed grid, centred on the zero frequency, normalised to a maximum of 1."""
    rows, cols = shape
    kk, jj = np.meshgrid(np.arange(rows) - rows // 2, np.arange(cols) - cols // 2, indexing="ij")
    f = np.exp(-(kk**2) / (2 * alpha_r**2) - jj**2 / (2 * alpha_c**2))
    return f / f.max()


def oss(grid: Grid, x0: np.ndarray, iterations: int, beta: float, stages: int) -> tuple[list[np.ndarray], np.ndarray]:
    g, outs = grid.pad(x0), []
    rows, cols = g.shape[-2:]
    best_err, best = np.inf, None
    for s in range(stages):
        scale = 2.0 - 1.8 * s / (stages - 1) if stages > 1 else 2.0
        kfilter = centred_gaussian((rows, cols), scale * rows, scale * cols)
        stage_err, stage_g, stage_out = np.inf, None, None
        for _ in range(s * iterations // stages, (s + 1) * iterations // stages):
            gp = grid.fourier(g)
            out = grid.project(gp)
            spectrum = np.fft.fftshift(np.fft.fft2(g - beta * gp), axes=(-2, -1)) * kfilter
            smooth = np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1))).real
            g_next = np.where(grid.mask, grid.hio(g, gp, beta), smooth)
            err = grid.r_factor(out)
            if err < stage_err:
                stage_err, stage_g, stage_out = err, g_next, out
            outs.append(out[grid.inside])
            g = g_next
        g = stage_g
        if stage_err < best_err:
            best_err, best = stage_err, stage_out
    return outs, best[grid.inside]


# ---------------------------------------------------------------------------------------------------------
# Our side, for the comparisons: the same measurement and start through dps_exp's sampler.


def problem(batch: int = 2, channels: int = 2, size: int = 16, sigma: float = 0.05, seed: int = 0):
    """(x, y, physics, x0): smooth random images on [-1, 1] (B, C, size, size), float64, their noisy phase-retrieval
    measurement (oversample 2: 4 px of padding per side at 16 px), and a start x0 like x."""

    from dps_exp import batch as streams
    from dps_exp.physics.noise import Noise
    from dps_exp.physics.phase import PhaseRetrieval

    gen = torch.Generator().manual_seed(seed)
    shape = (batch, channels, size, size)
    k = torch.fft.fftfreq(size, dtype=torch.float64)
    lowpass = torch.exp(-(k[:, None] ** 2 + k[None] ** 2) / (2 * 0.1**2))
    field = torch.fft.ifft2(torch.fft.fft2(torch.randn(shape, generator=gen, dtype=torch.float64)) * lowpass).real
    x = 0.95 * field / field.abs().amax(dim=(-2, -1), keepdim=True)
    physics = PhaseRetrieval(2.0, Noise("gaussian", sigma) if sigma else Noise("none"))
    physics.draw(shape, [], x.device)
    y = physics.measure(x, streams.generators([seed] * batch, list(range(batch)), "measurement"))
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, y, physics, x0


def ours(sampler, y, physics, x0):
    """Run `sampler` (its prior is not used: None) from x0, its first noise() draw (later draws, for restarts, come
    from a fixed stream); returns (the result, the per-iteration estimates stacked (K, B, C, H, W))."""

    gen, first, steps = torch.Generator().manual_seed(1), [x0], []

    def noise():
        return first.pop() if first else torch.randn(x0.shape, generator=gen, dtype=x0.dtype)

    result = sampler.sample(y, physics, None, None, noise, callback=lambda k, image, _: steps.append(image.clone()))
    return result, torch.stack(steps)


def simple_images(size: int = 16):
    """(5, 1, size, size) float64: two rectangles (one at 1, one at 0.3) on −1, and four smooth random fields on
    [-0.95, 0.95] (`problem`'s images, seeds 0–3)."""

    rects = -torch.ones(1, 1, size, size, dtype=torch.float64)
    rects[..., 2:7, 3:12], rects[..., 9:14, 5:9] = 1.0, 0.3
    fields = [problem(batch=1, channels=1, size=size, sigma=0, seed=s)[0] for s in range(4)]
    return torch.cat([rects, *fields])


def ambiguity_rmse(estimate, truth):
    """(B,) RMSE of each estimate to the nearest of ±truth and ±truth rotated by 180° within the image, per channel:
    the images with the same |F P x| (the trivial ambiguities that the support leaves)."""

    variants = torch.stack([truth, -truth, truth.flip(-2, -1), -truth.flip(-2, -1)])
    return ((variants - estimate[None]) ** 2).mean((-2, -1)).amin(0).mean(1).sqrt()


def recoveries(sampler, starts: int = 8, size: int = 16, tolerance: float = 0.05) -> list[int]:
    """For each of the simple images (noiseless, oversample 2), how many of `starts` random starts of `sampler`
    recover it within `tolerance` RMSE up to the ambiguities."""

    from dps_exp import batch as streams
    from dps_exp.physics.noise import Noise
    from dps_exp.physics.phase import PhaseRetrieval

    truth = simple_images(size).repeat_interleave(starts, 0)
    physics = PhaseRetrieval(2.0, Noise("none"))
    physics.draw(truth.shape, [], truth.device)
    y = physics.measure(truth, [])
    gens = streams.generators(list(range(len(truth))), [0] * len(truth), "sampler")
    result = sampler.sample(y, physics, None, None, lambda: streams.randn(truth.shape, gens, dtype=truth.dtype))
    return (ambiguity_rmse(result.x, truth) < tolerance).view(-1, starts).sum(1).tolist()


def best_of_four(name: str, tmp_path) -> list[dict]:
    """`python -m dps_exp.run physics=phase_retrieval sampler=NAME` on the bundled face at 32 px, 20 iterations,
    seeds 0–3 (the paper's best of 4: one point-K/ directory each); returns the four result rows, seed order."""
    import json

    from tests.helpers import cli

    proc = cli("physics=phase_retrieval", f"sampler={name}", "denoiser=gaussian", "data.size=32", "data.limit=1",
               "logger=none", "progress=false", "sampler.iterations=20", "seed=[0,1,2,3]", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = {p.parent.parent for p in (tmp_path / "outputs").rglob("point-*/results.jsonl")}
    rows = [json.loads((run / f"point-{k}" / "results.jsonl").read_text()) for k in range(4)]
    assert [r["seed"] for r in rows] == [0, 1, 2, 3]
    assert all(r["status"] == "ok" and r["nfe"] == 0 and r["params"]["sampler.iterations"] == 20 for r in rows)
    assert len({r["metrics"]["psnr"] for r in rows}) == 4  # each seed its own start
    return rows


def refused(name: str, tmp_path, *overrides: str) -> str:
    """The CLI's one-line refusal (exit 2, before any work) of sampler=NAME with `overrides`."""
    from tests.helpers import cli

    proc = cli(f"sampler={name}", "denoiser=gaussian", "data.size=16", "logger=none", "progress=false", *overrides,
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert not list(tmp_path.rglob("results.jsonl"))
    (line,) = proc.stderr.strip().splitlines()
    return line


def batched_minus_alone(name: str, tmp_path, points: dict[str, list]) -> list[float]:
    """Through the Run on the bundled face at 16 px: the sweep `points` (zipped per-sample lists) in one batch and
    each alone; returns, per point, the largest difference of its reconstruction, and checks the points differ."""
    from omegaconf import OmegaConf

    from dps_exp.run.experiment import Run
    from tests.helpers import compose

    lists = [f"{k}=[{','.join(map(str, v))}]" for k, v in points.items()]
    cfg = compose(["physics=phase_retrieval", f"sampler={name}", "denoiser=gaussian", "data.size=16",
                   "sampler.iterations=100", "logger=none", "progress=false", *lists])  # fmt: skip
    run = Run(OmegaConf.to_container(cfg, resolve=True), tmp_path)
    item = run.data.items()[0]
    together = run.run_batch([(item, p, 0) for p in run.points])
    assert (together[0] - together[1]).abs().max().item() > 1e-2
    return [(together[b] - run.run_batch([(item, p, 0)])[0]).abs().max().item() for b, p in enumerate(run.points)]
