"""The tutorial's GoogLeNet (Inception v1) as a PyTorch module, named like our engine.

The module tree is the one the tutorial builds, so ``state_dict()`` keys and shapes are
exactly the parameter names our checkpoints use (``conv1.0.weight``, ``conv2.2.bias``,
``inception_4e.branch3_2.weight``, ``fc.weight``, ...): a ``model.safetensors`` written
by ``train`` loads with ``load_state_dict(..., strict=True)``.

The one departure from the tutorial is the average pool: it has ``AvgPool2d(7)``, this
has ``AdaptiveAvgPool2d(1)``. At 224x224 (a 7x7 plane) the two are identical; the
adaptive pool also runs on small images (32x32), as ours does.

A checkpoint of a run on your own images (``train --data DIR``) has that data set's
channels in ``conv1`` and its classes in ``fc``; ``model_for_checkpoint`` reads both
from the checkpoint's tensors (and the class names from its ``state.json``), so strict
loading works for any of them.

Run as a script to check a checkpoint against this model::

    python scripts/pytorch_model.py runs/<run>/checkpoints/epoch-1 [--image-size 32]

which loads it strictly, prints each stage's output shape and parameter count (the same
table as ``train --summary``) and runs one forward pass.
"""

import argparse
import json
import os
import sys

import torch
from torch import nn

#: The paper's Inception table: name -> (in, c1, (c2a, c2b), (c3a, c3b), c4).
INCEPTION_TABLE = [
    ("inception_3a", (192, 64, (96, 128), (16, 32), 32)),
    ("inception_3b", (256, 128, (128, 192), (32, 96), 64)),
    ("inception_4a", (480, 192, (96, 208), (16, 48), 64)),
    ("inception_4b", (512, 160, (112, 224), (24, 64), 64)),
    ("inception_4c", (512, 128, (128, 256), (24, 64), 64)),
    ("inception_4d", (512, 112, (144, 288), (32, 64), 64)),
    ("inception_4e", (528, 256, (160, 320), (32, 128), 128)),
    ("inception_5a", (832, 256, (160, 320), (32, 128), 128)),
    ("inception_5b", (832, 384, (192, 384), (48, 128), 128)),
]


class Inception(nn.Module):
    """Four branches over one input, concatenated on channels (the tutorial's block)."""

    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.branch1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.branch2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.branch2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.branch3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.branch3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.branch4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.branch4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x):
        relu = torch.relu
        b1 = relu(self.branch1(x))
        b2 = relu(self.branch2_2(relu(self.branch2_1(x))))
        b3 = relu(self.branch3_2(relu(self.branch3_1(x))))
        b4 = relu(self.branch4_2(self.branch4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


class GoogLeNet(nn.Module):
    """GoogLeNet for ``in_channels``-channel images and ``classes`` classes."""

    def __init__(self, in_channels=1, classes=10, dropout=0.4):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(64, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        # Attribute order is stage order (and state_dict order), as in the tutorial.
        for name, row in INCEPTION_TABLE:
            setattr(self, name, Inception(*row))
            if name == "inception_3b":
                self.max_pool3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            if name == "inception_4e":
                self.max_pool4 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # The tutorial's AvgPool2d(7), for any input size (identical at 224x224).
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x):
        for _, stage in self.stages():
            x = stage(x)
        return x

    def stages(self):
        """(name, callable) for each stage, in order; the last one flattens and classifies."""
        for name, module in self.named_children():
            if name == "fc":
                yield name, lambda x, fc=module: fc(torch.flatten(x, 1))
            else:
                yield name, module


def model_file(path):
    """A checkpoint directory's model.safetensors, or ``path`` itself."""
    return os.path.join(path, "model.safetensors") if os.path.isdir(path) else path


def load_checkpoint(model, path):
    """Loads ``path`` (a checkpoint directory or its model.safetensors) strictly."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(model_file(path)), strict=True)
    return model


def class_names(path):
    """The class names a checkpoint directory's ``state.json`` records (a run on your own
    images), or None (Fashion-MNIST's runs, bare model files)."""
    state = os.path.join(path, "state.json") if os.path.isdir(path) else None
    if state is None or not os.path.exists(state):
        return None
    with open(state) as f:
        return json.load(f).get("data", {}).get("classes")


def model_for_checkpoint(path):
    """The model of the checkpoint at ``path``, its channels (``conv1.0.weight``'s second
    dimension) and classes (``fc.weight``'s first) read from the checkpoint, loaded
    strictly; and its class names, or None."""
    from safetensors import safe_open

    with safe_open(model_file(path), framework="pt") as f:
        in_channels = f.get_slice("conv1.0.weight").get_shape()[1]
        classes = f.get_slice("fc.weight").get_shape()[0]
    model = GoogLeNet(in_channels=in_channels, classes=classes)
    return load_checkpoint(model, path), class_names(path)


def summary(model, size, in_channels=1):
    """The same table as ``train --summary``: each stage's output shape and parameters."""
    lines = [f"GoogLeNet on {in_channels}x{size}x{size} inputs",
             f"{'stage':<14} {'output':>16} {'parameters':>12}"]
    x = torch.zeros(1, in_channels, size, size)
    total = 0
    with torch.no_grad():
        for name, stage in model.stages():
            x = stage(x)
            count = sum(p.numel() for p in getattr(model, name).parameters())
            total += count
            shape = "x".join(str(d) for d in x.shape[1:])
            lines.append(f"{name:<14} {shape:>16} {count:>12}")
    lines.append(f"{'total':<14} {'':>16} {total:>12}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?",
                        help="checkpoint directory or model.safetensors to load strictly")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    model, names = GoogLeNet(), None
    if args.checkpoint:
        model, names = model_for_checkpoint(args.checkpoint)
        print(f"loaded {args.checkpoint} with strict=True "
              f"({len(model.state_dict())} tensors)")
    in_channels = model.conv1[0].in_channels
    print(f"{in_channels} channel(s), {model.fc.out_features} classes"
          + (f": {', '.join(names)}" if names else ""))
    print(summary(model.eval(), args.image_size, in_channels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
