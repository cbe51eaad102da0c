"""The M2DN network: a modality-masked diffusion U-Net and its DDIM sampler, on MONAI.

Our reading of M2DN (Meng et al., IEEE TMI 2024; no public code): the four modalities
are one multi-channel image; the missing ones are diffused (they start as noise at
sampling time) while the given ones stay clean; the availability mask is an input of
the network (one channel per modality, +1 given, -1 missing) beside the images; the
network predicts the clean images of every modality at once (``prediction_type``
``sample``). Sampling runs DDIM over ``sampling_steps`` steps, putting the given
modalities back in after every step, so they come out unchanged. The U-Net is MONAI's
:class:`~monai.networks.nets.DiffusionModelUNet`, the noise schedule MONAI's
:class:`~monai.networks.schedulers.DDIMScheduler`.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler
from torch import nn

from iusynth.methods.m2dn import M2DNSettings


class M2DNNetwork(nn.Module):
    """Denoiser of the missing modalities, conditioned on the given ones and their mask."""

    def __init__(self, settings: M2DNSettings, modalities: int) -> None:
        super().__init__()
        self.unet = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=2 * modalities,
            out_channels=modalities,
            num_res_blocks=settings.res_blocks,
            channels=settings.channels,
            attention_levels=settings.attention_levels,
            norm_num_groups=settings.norm_groups,
            num_head_channels=settings.head_channels,
        )
        self.scheduler = DDIMScheduler(
            num_train_timesteps=settings.train_timesteps,
            schedule=settings.schedule,
            prediction_type="sample",
            clip_sample=True,
        )
        self.sampling_steps = settings.sampling_steps
        self.train_timesteps = settings.train_timesteps

    def denoise(
        self, noisy: torch.Tensor, observed: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The clean images of every modality predicted from ``noisy`` at ``timesteps``.

        ``noisy``: batch x modalities x H x W (the given ones clean); ``observed``: batch x
        modalities, True where given; ``timesteps``: batch.
        """
        mask = observed[:, :, None, None].to(noisy.dtype).expand_as(noisy) * 2 - 1
        return self.unet(torch.cat([noisy, mask], dim=1), timesteps)

    def diffused(
        self,
        images: torch.Tensor,
        observed: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
    ) -> torch.Tensor:
        """``images`` with the missing modalities noised to ``timesteps``, the given ones clean."""
        noisy = self.scheduler.add_noise(images, noise, timesteps)
        return torch.where(observed[:, :, None, None], images, noisy)

    def sample(self, images: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Every modality: the given ones as they are, the missing ones sampled by DDIM.

        The starting noise comes from torch's global generator (the synthesis stage seeds it
        per subject).
        """
        given = observed[:, :, None, None]
        x = torch.where(given, images, torch.randn_like(images))
        self.scheduler.set_timesteps(self.sampling_steps, device=images.device)
        for t in self.scheduler.timesteps:
            timesteps = torch.full((images.shape[0],), int(t), device=images.device)
            predicted = self.denoise(x, observed, timesteps)
            x, _ = self.scheduler.step(predicted, int(t), x)
            x = torch.where(given, images, x)
        return x.clamp(-1, 1)

    def forward(self, images: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """:meth:`sample` (the synthesis call)."""
        return self.sample(images, observed)
