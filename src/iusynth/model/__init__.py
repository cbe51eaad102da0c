"""MMHVAE: a multi-modal hierarchical VAE for MRI <-> iUS synthesis (and its relatives).

- :mod:`~iusynth.model.cells`: the building blocks (residual, NVAE and ResNet cells).
- :mod:`~iusynth.model.fusion`: Gaussian experts, their product, average and KL.
- :mod:`~iusynth.model.network`: encoders, the shared top-down decoder, heads.
- :mod:`~iusynth.model.discriminator`: per-modality PatchGAN discriminators.
"""
