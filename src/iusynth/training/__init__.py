"""Training loops: MMHVAE and its variants, the GAN baselines, pretrained weights."""
