"""An independent, literal re-statement of the reference ``ResnetGenerator`` (CUT layout).

Written from the reference's architecture description as one flat ``nn.Sequential``, exactly the
structure whose ``state_dict`` the authors released, so converter tests can produce reference
checkpoints of any ngf / block count / anti-aliasing setting and compare outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _binomial(size: int) -> torch.Tensor:
    row = {3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0]}[size]
    k = torch.tensor(row)[:, None] * torch.tensor(row)[None, :]
    return k / k.sum()


class RefDownsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", _binomial(3)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d([1, 1, 1, 1])

    def forward(self, x):
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class RefUpsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", (_binomial(4) * 4)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReplicationPad2d([1, 1, 1, 1])

    def forward(self, x):
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=x.shape[1])[:, :, 1:, 1:]
        return y[:, :, :-1, :-1]


class RefResnetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, ngf: int = 64, n_blocks: int = 9, antialias: bool = True, antialias_up: bool = True) -> None:
        super().__init__()
        norm = nn.InstanceNorm2d
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            if antialias:
                layers += [
                    nn.Conv2d(c, c * 2, 3, stride=1, padding=1),
                    norm(c * 2),
                    nn.ReLU(True),
                    RefDownsample(c * 2),
                ]
            else:
                layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1), norm(c * 2), nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            if antialias_up:
                layers += [RefUpsample(c), nn.Conv2d(c, c // 2, 3, padding=1), norm(c // 2), nn.ReLU(True)]
            else:
                layers += [
                    nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                    norm(c // 2),
                    nn.ReLU(True),
                ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)

    def taps(self, x, layers):
        feats = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in layers:
                feats.append(x)
            if i == max(layers):
                break
        return feats
