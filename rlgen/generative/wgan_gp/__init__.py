"""WGAN-GP (Gulrajani et al., 2017): a Wasserstein critic kept 1-Lipschitz by a gradient penalty."""

from rlgen.generative.wgan_gp.config import WGANGPConfig
from rlgen.generative.wgan_gp.networks import Critic, Generator

__all__ = ["Critic", "Generator", "WGANGPConfig"]
