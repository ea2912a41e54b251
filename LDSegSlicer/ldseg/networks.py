"""The four LDSeg networks (ldseg-method.md, "The four networks"), sized by the model card.

Notation as in the paper: y label map, X image, z_l0 label latent, z_i image latent,
z_lt noisy label latent at timestep t, z_nt predicted noise, z_dn denoised latent.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import UnetResBlock
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from .card import Architecture, ModelCard


def _norm(channels: int, groups: int) -> tuple:
    return ("group", {"num_groups": min(groups, channels)})


class LatentLayerNorm(nn.Module):
    """Zero mean, unit variance over the whole one-channel latent, optionally with learned scale and shift.

    The label latent has no learned affine: the sampler re-normalises every DDIM step to zero mean
    and unit variance, so the clean label latents it must reach have to be exactly that.
    """

    def __init__(self, latent_grid: tuple[int, int, int], learned_affine: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm((1, *latent_grid), elementwise_affine=learned_affine)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.norm(z)


class LabelEncoder(nn.Module):
    """Label map -> z_l0: residual stages with a stride-2 convolution between stages."""

    def __init__(self, arch: Architecture, latent_grid: tuple[int, int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for stage, channels in enumerate(arch.label_encoder_channels):
            if stage > 0:
                layers.append(nn.Conv3d(in_channels, channels, kernel_size=3, stride=2, padding=1))
                in_channels = channels
            layers.append(
                UnetResBlock(3, in_channels, channels, 3, 1, _norm(channels, arch.encoder_groups), "swish", arch.dropout)
            )
            in_channels = channels
        layers.append(nn.Conv3d(in_channels, 1, kernel_size=1))
        self.body = nn.Sequential(*layers)
        self.latent_norm = LatentLayerNorm(latent_grid, learned_affine=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.latent_norm(self.body(y))


class ImageEncoderBlock(nn.Module):
    """1x1x1 residual path plus grouped 3x3x3 convolutions, then max-pool 2 and GroupNorm."""

    def __init__(self, in_channels: int, channels: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.shortcut = nn.Conv3d(in_channels, channels, kernel_size=1)
        self.convs = nn.Sequential(
            nn.Conv3d(in_channels, channels, 3, padding=1, groups=_groups(in_channels, channels, groups)),
            nn.GroupNorm(min(groups, channels), channels),
            nn.SiLU(),
            nn.Dropout3d(dropout),
            nn.Conv3d(channels, channels, 3, padding=1, groups=_groups(channels, channels, groups)),
        )
        self.pool = nn.MaxPool3d(2)
        self.norm = nn.GroupNorm(min(groups, channels), channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features at the input's scale, before pooling; the pooled, normalised output)."""
        features = nn.functional.silu(self.shortcut(x) + self.convs(x))
        return features, self.norm(self.pool(features))


def _groups(in_channels: int, out_channels: int, groups: int) -> int:
    """The largest group count <= `groups` that divides both channel counts."""
    while in_channels % groups or out_channels % groups:
        groups -= 1
    return groups


class ImageEncoder(nn.Module):
    """Image X -> z_i on the latent grid, and the feature maps the label decoder's skips take.

    Ends with the same whole-latent LayerNorm as the label encoder rather than the reference's
    BatchNorm: at inference the image latent is computed once per volume, so batch statistics from
    tiny training batches would differ between training and inference.
    """

    def __init__(self, arch: Architecture, latent_grid: tuple[int, int, int]) -> None:
        super().__init__()
        channels = arch.image_encoder_channels
        layers: list[nn.Module] = [nn.Conv3d(1, channels[0], 3, padding=1), nn.SiLU()]
        for in_channels, out_channels in zip(channels[:-1], channels[1:]):
            layers.append(ImageEncoderBlock(in_channels, out_channels, arch.encoder_groups, arch.dropout))
        layers.append(nn.Conv3d(channels[-1], 1, kernel_size=1))
        self.body = nn.Sequential(*layers)
        self.latent_norm = LatentLayerNorm(latent_grid, learned_affine=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(z_i, skips): skips[k] is block k's pre-pooling feature map, at 1 / 2**k of the model grid."""
        skips = []
        for layer in self.body:
            if isinstance(layer, ImageEncoderBlock):
                features, x = layer(x)
                skips.append(features)
            else:
                x = layer(x)
        return self.latent_norm(x), skips


class LabelDecoder(nn.Module):
    """z_dn -> class logits on the model grid: stages of (nearest upsample x2, conv, residual block).

    With image skips (Architecture.decoder_image_skips) each stage also takes the image encoder's
    features at its scale, concatenated after the upsampling, as in a U-Net.
    """

    def __init__(self, arch: Architecture, num_classes: int) -> None:
        super().__init__()
        self.image_skips = arch.decoder_image_skips
        # stage s (coarsest first) takes the pre-pooling features of image encoder block n - s (its scale)
        skip_channels = arch.image_encoder_channels[:0:-1] if self.image_skips else (0,) * len(arch.label_decoder_channels)
        last = len(arch.label_decoder_channels) - 1
        layers: list[nn.Module] = []
        in_channels = 1
        for stage, (channels, skip) in enumerate(zip(arch.label_decoder_channels, skip_channels)):
            kernel = arch.full_resolution_kernel if stage == last else 3
            norm = _norm(channels, arch.encoder_groups)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv3d(in_channels + skip, channels, kernel, padding=kernel // 2),
                UnetResBlock(3, channels, channels, kernel, 1, norm, "swish", arch.dropout),
            ]
            in_channels = channels
        layers.append(nn.Conv3d(in_channels, num_classes, kernel_size=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z_dn: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`skips` as ImageEncoder returns them, batch size 1 shared by every latent (needed with image skips)."""
        pending = list(skips or [])
        x = z_dn
        for layer in self.body:
            x = layer(x)
            if self.image_skips and isinstance(layer, nn.Upsample):
                skip = pending.pop()
                x = torch.cat([x, skip.expand(x.shape[0], *skip.shape[1:])], dim=1)
        return x


def build_denoiser(arch: Architecture) -> DiffusionModelUNet:
    """Time-conditioned U-Net on the latent grid: input concat(z_lt, z_i), output z_nt (predicted noise)."""
    return DiffusionModelUNet(
        spatial_dims=3,
        in_channels=2,
        out_channels=1,
        channels=arch.denoiser_channels,
        attention_levels=arch.denoiser_attention_levels,
        num_res_blocks=arch.denoiser_res_blocks,
        norm_num_groups=arch.denoiser_norm_groups,
        num_head_channels=min(8, min(arch.denoiser_channels)),
    )


class LDSegNetwork(nn.Module):
    """The four networks together, as trained end to end and as stored in a model package."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        arch, latent_grid = card.architecture, card.latent_grid
        self.label_encoder = LabelEncoder(arch, latent_grid)
        self.image_encoder = ImageEncoder(arch, latent_grid)
        self.denoiser = build_denoiser(arch)
        self.label_decoder = LabelDecoder(arch, card.num_classes)

    def predict_noise(self, z_lt: torch.Tensor, z_i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_nt = denoiser(concat(z_lt, z_i), t); z_i may have batch size 1 and is shared."""
        if z_i.shape[0] != z_lt.shape[0]:
            z_i = z_i.expand(z_lt.shape[0], *z_i.shape[1:])
        return self.denoiser(torch.cat([z_lt, z_i], dim=1), timesteps=t)
