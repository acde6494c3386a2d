"""Singular value decompositions A = U diag(s) Vᵀ of the linear operators whose structure gives one exactly, for
samplers that work in the operator's spectral space (DDRM).

Spectral coordinates have the image's layout: x̄ = Vᵀ x is a (B, C, H, W) tensor like x, and `s` gives each
coordinate's singular value (broadcastable to (B, C, H, W); 0 where A sees nothing of that coordinate). Ut puts
a measurement's Uᵀ y on the coordinates its singular values belong to (zeros elsewhere) and U reads them back,
so that for every image x and measurement y

    A x  = U(s · Vt(x))          A⁺ y = V(Ut(y) / s)  where s > 0 (0 elsewhere)
    V(Vt(x)) = x                 U(Ut(y)) = y           (V orthogonal; U orthogonal on the measurements)

Two structures give it exactly:

  Diagonal    A = diag(a), a per pixel (inpainting masks: a ∈ {0, 1}; denoising: a = 1): U = V = I, s = a.
  Separable   A X = R_H X R_Wᵀ per channel, R_H (h, H) and R_W (w, W) (super-resolution's resize matrices, a
              separable blur's 1-D "pad then convolve" matrices): A = R_H ⊗ R_W, whose SVD is the Kronecker
              product of the 1-D ones, R = U_R diag(s_R) V_Rᵀ. Coordinate (i, j) of the spectrum is
              V_H[:, i] ⊗ V_W[:, j], with s = s_H[i] s_W[j] (0 for i ≥ h or j ≥ w: the null space).

The 1-D SVDs are computed in float64 (`torch.linalg.svd`); `to` casts a system for use (DDRM: float32).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor


class SingularSystem(ABC):
    """A = U diag(s) Vᵀ for a batch of operators (one per sample, or one shared by the batch).

    Attributes:
        s: singular value of each spectral coordinate, ≥ 0, shaped to broadcast against (B, C, H, W)
    """

    s: Tensor

    @abstractmethod
    def Vt(self, x: Tensor) -> Tensor:
        """Image (B, C, H, W) → its spectral coefficients x̄ = Vᵀ x (B, C, H, W)."""

    @abstractmethod
    def V(self, z: Tensor) -> Tensor:
        """Spectral coefficients (B, C, H, W) → the image V z."""

    @abstractmethod
    def Ut(self, y: Tensor) -> Tensor:
        """Measurement y (as A returns it) → Uᵀ y on the spectral layout (B, C, H, W), 0 where s has no slot."""

    @abstractmethod
    def U(self, z: Tensor) -> Tensor:
        """Spectral layout (B, C, H, W) → the measurement U z (coordinates without a slot are ignored)."""

    @abstractmethod
    def to(self, like: Tensor) -> Self:
        """This system in `like`'s dtype and on its device."""

    @abstractmethod
    def truncated(self, zero: float) -> Self:
        """This system with each factor's singular values below `zero` set to 0 (the diagonal's entries, or a
        separable operator's 1-D singular values, as the official DDRM code thresholds its 1-D SVDs)."""

    def pinv(self, y: Tensor) -> Tensor:
        """A⁺ y = V(Ut(y) / s) over the nonzero singular values."""
        s = self.s
        return self.V(torch.where(s > 0, self.Ut(y) / torch.where(s > 0, s, 1), 0))


@dataclass(frozen=True)
class Diagonal(SingularSystem):
    """A = diag(s) on the pixels: U = V = I."""

    s: Tensor
    """(B or 1, C or 1, H or 1, W or 1): the per-pixel gain (an inpainting mask, or 1 for denoising)."""

    def Vt(self, x: Tensor) -> Tensor:
        return x

    def V(self, z: Tensor) -> Tensor:
        return z

    def Ut(self, y: Tensor) -> Tensor:
        return y

    def U(self, z: Tensor) -> Tensor:
        return z

    def to(self, like: Tensor) -> Diagonal:
        return Diagonal(self.s.to(like))

    def truncated(self, zero: float) -> Diagonal:
        return Diagonal(torch.where(self.s < zero, 0, self.s))


@dataclass(frozen=True)
class Factor:
    """R = U diag(s) Vᵀ for a batch of (m, n) matrices, m ≤ n, as (B or 1, 1, ·, ·) for broadcasting over channels."""

    U: Tensor
    """(B or 1, 1, m, m), orthogonal."""
    s: Tensor
    """(B or 1, 1, n): the m singular values, then n − m zeros (the null space)."""
    V: Tensor
    """(B or 1, 1, n, n), orthogonal."""

    @staticmethod
    def of(R: Tensor) -> Factor:
        """The float64 SVD of R, (m, n) or (B, m, n) with m ≤ n."""
        R = R.double()
        if R.ndim == 2:
            R = R[None]
        m, n = R.shape[-2:]
        if m > n:
            raise ValueError(f"a ({m}, {n}) factor: only m ≤ n is supported (a resize that does not enlarge)")
        U, s, Vh = torch.linalg.svd(R, full_matrices=True)
        return Factor(U[:, None], F.pad(s, (0, n - m))[:, None], Vh.mT[:, None])

    @staticmethod
    def cat(factors: list[Factor]) -> Factor:
        """One batch of the factors of several (of one shape)."""
        return Factor(*(torch.cat([getattr(f, k) for f in factors]) for k in ("U", "s", "V")))

    @property
    def m(self) -> int:
        return self.U.shape[-1]

    def to(self, like: Tensor) -> Factor:
        return Factor(self.U.to(like), self.s.to(like), self.V.to(like))

    def truncated(self, zero: float) -> Factor:
        return replace(self, s=torch.where(self.s < zero, 0, self.s))


@dataclass(frozen=True)
class Separable(SingularSystem):
    """A X = R_H X R_Wᵀ on each channel, R_H = U_H S_H V_Hᵀ and R_W = U_W S_W V_Wᵀ:
    A = (U_H ⊗ U_W)(S_H ⊗ S_W)(V_H ⊗ V_W)ᵀ, with Vt(X) = V_Hᵀ X V_W, Ut(Y) = U_Hᵀ Y U_W (placed in the top-left h × w
    corner) and s[i, j] = s_H[i] s_W[j]."""

    rows: Factor
    """The SVD of R_H (acting on the image's columns of height H)."""
    cols: Factor
    """The SVD of R_W (acting on its rows of width W)."""

    @property
    def s(self) -> Tensor:
        return self.rows.s[..., :, None] * self.cols.s[..., None, :]

    def Vt(self, x: Tensor) -> Tensor:
        return self.rows.V.mT @ x @ self.cols.V

    def V(self, z: Tensor) -> Tensor:
        return self.rows.V @ z @ self.cols.V.mT

    def Ut(self, y: Tensor) -> Tensor:
        core = self.rows.U.mT @ y @ self.cols.U
        H, W = self.rows.s.shape[-1], self.cols.s.shape[-1]
        return F.pad(core, (0, W - core.shape[-1], 0, H - core.shape[-2]))

    def U(self, z: Tensor) -> Tensor:
        return self.rows.U @ z[..., : self.rows.m, : self.cols.m] @ self.cols.U.mT

    def to(self, like: Tensor) -> Separable:
        return Separable(self.rows.to(like), self.cols.to(like))

    def truncated(self, zero: float) -> Separable:
        return Separable(self.rows.truncated(zero), self.cols.truncated(zero))
