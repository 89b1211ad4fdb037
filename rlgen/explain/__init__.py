"""A look inside the networks: saliency and Grad-CAM, transformer attention, VAE latent traversals."""
