"""Generative models (VAE, WGAN-GP, diffusion) and their evaluation."""
