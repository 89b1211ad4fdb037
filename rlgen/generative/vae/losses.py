"""The evidence lower bound and an importance-sampled likelihood estimate, all in nats per image."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from rlgen.errors import InputError

Likelihood = Literal["bernoulli", "gaussian"]


@dataclass
class ElboTerms:
    """Per-image terms, each (B,), in nats: ``elbo = -recon - kl``."""

    elbo: torch.Tensor
    recon: torch.Tensor  # -E_q[log p(x|z)], one sample
    kl: torch.Tensor  # KL(q(z|x) || N(0, I)), closed form


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) for (B, Z) inputs -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def log_likelihood(
    x: torch.Tensor, decoder_out: torch.Tensor, likelihood: Likelihood, log_scale: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """log p(x|z) summed over pixels: (B, C, H, W) -> (B,).

    Bernoulli takes logits and targets in [0, 1]; Gaussian takes means and one log
    standard deviation shared by all pixels.
    """
    if likelihood == "bernoulli":
        per_pixel = -F.binary_cross_entropy_with_logits(decoder_out, x, reduction="none")
    elif likelihood == "gaussian":
        log_scale = torch.as_tensor(log_scale, dtype=decoder_out.dtype, device=decoder_out.device)
        per_pixel = -0.5 * ((x - decoder_out) * torch.exp(-log_scale)).pow(2) - log_scale - 0.5 * math.log(2 * math.pi)
    else:
        raise InputError(f"likelihood={likelihood!r} is not allowed; choose 'bernoulli' or 'gaussian'")
    return per_pixel.flatten(1).sum(dim=1)


def elbo(
    x: torch.Tensor,
    decoder_out: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    likelihood: Likelihood,
    log_scale: torch.Tensor | float = 0.0,
) -> ElboTerms:
    """ELBO = E_q[log p(x|z)] - KL(q || p), the expectation from the sample that produced ``decoder_out``."""
    recon = -log_likelihood(x, decoder_out, likelihood, log_scale)
    kl = gaussian_kl(mu, logvar)
    return ElboTerms(elbo=-recon - kl, recon=recon, kl=kl)


def image_mean(decoder_out: torch.Tensor, likelihood: Likelihood) -> torch.Tensor:
    """The decoder's mean image in [0, 1] (sigmoid of logits, or the clamped Gaussian mean)."""
    return torch.sigmoid(decoder_out) if likelihood == "bernoulli" else decoder_out.clamp(0.0, 1.0)


@torch.no_grad()
def importance_sampled_nll(
    x: torch.Tensor,
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode: Callable[[torch.Tensor], torch.Tensor],
    likelihood: Likelihood,
    log_scale: torch.Tensor | float = 0.0,
    num_samples: int = 100,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """-log p(x) estimated with q(z|x) as proposal (Burda et al., 2016): (B, C, H, W) -> (B,) nats.

    log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, a lower
    bound that tightens as K grows and is exact when q is the true posterior.
    """
    mu, logvar = encode(x)  # (B, Z)
    std = torch.exp(0.5 * logvar)
    log_weights = []
    for _ in range(num_samples):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device if generator is None else generator.device)
        eps = eps.to(device=mu.device, dtype=mu.dtype)
        z = mu + std * eps  # (B, Z)
        log_p_x_z = log_likelihood(x, decode(z), likelihood, log_scale)
        log_p_z = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=-1)
        log_q_z = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(dim=-1)
        log_weights.append(log_p_x_z + log_p_z - log_q_z)
    stacked = torch.stack(log_weights, dim=0)  # (K, B)
    return -(torch.logsumexp(stacked, dim=0) - math.log(num_samples))
