"""Writes tests/fixtures/pytorch_googlenet.json: PyTorch's numbers for one GoogLeNet step.

Run by hand (PyTorch is not in CI; the fixtures are committed and `tests/pytorch_parity.rs`
compares our engine with them)::

    /work/.venv-torch/bin/python scripts/make_pytorch_fixture.py

The second fixture, where the CPU device's Winograd 3x3 path runs (conv2 on a 16x16
plane; one image, since on one image later Adam steps drive the float64 loss to 0)::

    python scripts/make_pytorch_fixture.py --batch 1 --image-size 64 --image-stream 5815 \
        --steps 1 --out tests/fixtures/pytorch_googlenet_64.json

(stream 5815: the largest margin of ``--find-image-stream 1000 --image-stream 5000``,
run as two searches of 300 and 700.)

What it computes, with ``scripts/pytorch_model.py``'s GoogLeNet:

* Weights, images and labels from one formula that the Rust test computes too (see
  ``hashed_uniform``): no random generator, no weights in the fixture.
* Dropout off: the model is built with ``dropout=0.0`` and run in ``train()`` mode, as
  the Rust test builds ``GoogLeNetConfig { dropout: 0.0, .. }`` and runs
  ``Mode::Train``. The model has no batch norm, so train and eval mode differ only in
  dropout, and dropout with p = 0 is the identity (mask of ones, scale 1/(1-0) = 1).
* One forward/backward on the batch: all logits, the mean cross-entropy, every
  parameter gradient's L2 norm and three sampled entries of it.
* Three Adam steps (lr 0.001, PyTorch's defaults, the same batch each time): the loss
  before each step, and after the last one each parameter's L2 norm, the L2 norm of
  its total update (after - before) and three sampled entries of that update (among
  entries whose gradient is clear of zero: see ``update_sample_indices``).
* The same run in float64, from the same (float32-rounded) weights: PyTorch's own
  float32 error against it is recorded, so the test's tolerances can be judged
  against the noise float32 arithmetic makes anyway.
* The decision margin: how far the first forward pass's closest ReLU input (or max-pool
  runner-up) is from flipping, over float32 noise (``decision_margins``). The images'
  stream was chosen for it: ``--find-image-stream 150 --image-stream 3000`` tried
  streams 3000..3149 and 3088 had the largest margin, 11.7x the noise.

Norms are taken in float64 of the float32 values, so taking them adds no error.
"""

import argparse
import json
import math
import os
import platform
import shlex
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_model import GoogLeNet  # noqa: E402

#: Streams of the formula: parameter t uses stream t; the labels use LABEL_STREAM, the
#: images IMAGE_STREAM (picked by --find-image-stream for its decision margins).
IMAGE_STREAM = 3088
LABEL_STREAM = 1001
SAMPLE_STREAM = 2000
SAMPLES = 3

FORMULA = (
    "value(stream, i) = a * (2 * u - 1), u = (splitmix64((stream << 32) | i) >> 11) / 2^53, "
    "in float64 then rounded to float32; splitmix64(k): z = k + 0x9E3779B97F4A7C15, "
    "z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9, z = (z ^ z >> 27) * 0x94D049BB133111EB, "
    "z ^ z >> 31 (all mod 2^64). Parameter t (state_dict order), element i (row-major): "
    "stream t, a = sqrt(6 / fan_in) for weights (Kaiming-uniform: activations keep "
    "their scale through the 22 ReLU layers), a = 1 / sqrt(fan_in) for biases "
    "(PyTorch's default bound); fan_in = weight.numel() / out. Images [n, 1, s, s]: "
    "stream image_stream, a = 1. Label j: splitmix64((1001 << 32) | j) % 10. Sampled gradient "
    "entries of parameter t: (f + k * (numel / 3)) % numel for k = 0, 1, 2 (integer "
    "division), f = splitmix64((2000 << 32) | t) % numel. Sampled update entries: the "
    "first 3 of splitmix64((2001 << 32) | (t << 16) | j) % numel, j = 0, 1, ..., whose "
    "float64 gradient is at least 0.1 x its tensor's RMS at every Adam step."
)


def splitmix64(keys):
    """splitmix64's output function on uint64 keys (wrapping arithmetic)."""
    z = np.asarray(keys, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hashed_uniform(stream, count, amplitude):
    """``count`` values in [-amplitude, amplitude): computed in float64, then float32.

    Only exactly rounded IEEE operations (a 53-bit integer to float, a power-of-two
    scale, one multiply) so Rust gets bit-identical values.
    """
    keys = (np.uint64(stream) << np.uint64(32)) | np.arange(count, dtype=np.uint64)
    u = (splitmix64(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (amplitude * (2.0 * u - 1.0)).astype(np.float32)


def formula_weights(model):
    """Every parameter of ``model`` set from the formula, in state_dict order."""
    values = {}
    fan_in = None
    for t, (name, p) in enumerate(model.state_dict().items()):
        if p.dim() > 1:  # a weight [out, in, (k, k)]
            fan_in = p[0].numel()
            amplitude = math.sqrt(6.0 / fan_in)
        else:  # its bias, right after it
            amplitude = 1.0 / math.sqrt(fan_in)
        values[name] = torch.from_numpy(hashed_uniform(t, p.numel(), amplitude)).view(p.shape)
    return values


def formula_batch(batch, size, image_stream=IMAGE_STREAM):
    """Images [batch, 1, size, size] in [-1, 1) and labels in 0..10 from the formula."""
    images = torch.from_numpy(hashed_uniform(image_stream, batch * size * size, 1.0))
    keys = (LABEL_STREAM << 32) + np.arange(batch, dtype=np.uint64)
    labels = torch.from_numpy((splitmix64(keys) % np.uint64(10)).astype(np.int64))
    return images.view(batch, 1, size, size), labels


def sample_indices(t, numel):
    """The ``SAMPLES`` flat indices of parameter t at which gradient entries are compared."""
    first = int(splitmix64(np.array([(SAMPLE_STREAM << 32) | t], dtype=np.uint64))[0]) % numel
    return [(first + k * (numel // SAMPLES)) % numel for k in range(SAMPLES)]


def update_sample_indices(t, step_grads, candidates=4096):
    """The ``SAMPLES`` flat indices of parameter t at which update entries are compared.

    Adam divides by the gradient's size, so an entry whose gradient is within float32
    noise of zero at some step has no well-defined float32 update (it can move by up to
    2 lr either way). Candidates come in the formula's order, splitmix64((2001 << 32) |
    (t << 16) | j) % numel for j = 0, 1, ...; the first ones whose float64 gradient is
    at least a tenth of the tensor's RMS at every step are taken.
    """
    flat = [g.flatten() for g in step_grads]
    rms = [g.norm().item() / math.sqrt(g.numel()) for g in flat]
    keys = np.array([((SAMPLE_STREAM + 1) << 32) | (t << 16) | j for j in range(candidates)],
                    dtype=np.uint64)
    chosen = []
    for c in (splitmix64(keys) % np.uint64(flat[0].numel())).tolist():
        if c not in chosen and all(g[c].abs().item() >= 0.1 * r for g, r in zip(flat, rms)):
            chosen.append(c)
            if len(chosen) == SAMPLES:
                break
    return chosen


def run(dtype, batch, size, steps, lr, image_stream):
    """The whole experiment in ``dtype``: first-step outputs and grads, then Adam."""
    model = GoogLeNet(dropout=0.0)
    model.load_state_dict(formula_weights(model), strict=True)
    model = model.to(dtype).train()
    images, labels = formula_batch(batch, size, image_stream)
    images = images.to(dtype)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, logits, step_grads = [], None, []
    for step in range(steps):
        optimizer.zero_grad()
        out = model(images)
        loss = nn.functional.cross_entropy(out, labels)
        loss.backward()
        if step == 0:
            logits = out.detach().clone()
        step_grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        losses.append(loss.item())
        optimizer.step()
    final = {n: p.detach().clone() for n, p in model.named_parameters()}
    return dict(labels=labels, logits=logits, losses=losses, grads=step_grads[0],
                step_grads=step_grads, initial=initial, final=final)


def f64(t):
    return t.detach().to(torch.float64)


def norm(t):
    return f64(t).norm().item()


def short(x, digits=9):
    """A float with ``digits`` significant digits (9 round-trips a float32)."""
    return float(f"{x:.{digits}g}")


def record(r32, r64, steps, lr):
    """The fixture's numbers, and PyTorch float32's error against float64."""
    params = []
    worst = dict(grad_norm=0.0, grad_sample=0.0, weight_norm=0.0, update_norm=0.0,
                 update_sample=0.0)
    for t, name in enumerate(r32["grads"]):
        g32, g64 = r32["grads"][name], r64["grads"][name]
        w0 = f64(r32["initial"][name])
        up32 = f64(r32["final"][name]) - w0
        up64 = f64(r64["final"][name]) - w0
        idx = sample_indices(t, g32.numel())
        up_idx = update_sample_indices(t, [g[name] for g in r64["step_grads"]])
        gn32, gn64 = norm(g32), norm(g64)
        rms = max(gn64 / math.sqrt(g32.numel()), 1e-30)
        un32, un64 = norm(up32), norm(up64)
        wn32, wn64 = norm(r32["final"][name]), norm(r64["final"][name])
        entry = {
            "name": name,
            "shape": list(g32.shape),
            "grad_norm": short(gn32, 10),
            "grad_norm_f64": short(gn64, 10),
            "grad_samples": [[i, short(g32.flatten()[i].item())] for i in idx],
            "weight_norm": short(wn32, 10),
            "weight_norm_f64": short(wn64, 10),
            "update_norm": short(un32, 10),
            "update_norm_f64": short(un64, 10),
            "update_samples": [[i, short(up32.flatten()[i].item())] for i in up_idx],
        }
        params.append(entry)
        rel = lambda a, b: abs(a - b) / abs(b) if b else abs(a - b)  # noqa: E731
        worst["grad_norm"] = max(worst["grad_norm"], rel(gn32, gn64))
        worst["weight_norm"] = max(worst["weight_norm"], rel(wn32, wn64))
        worst["update_norm"] = max(worst["update_norm"], rel(un32, un64))
        for i in idx:
            d = abs(g32.flatten()[i].item() - g64.flatten()[i].item())
            worst["grad_sample"] = max(worst["grad_sample"], d / rms)
        for i in up_idx:
            d = abs(up32.flatten()[i].item() - up64.flatten()[i].item())
            worst["update_sample"] = max(worst["update_sample"], d / lr)
    l32, l64 = f64(r32["logits"]), f64(r64["logits"])
    worst["logits"] = ((l32 - l64).abs().max() / l64.abs().max()).item()
    worst["loss"] = max(abs(a - b) / b for a, b in zip(r32["losses"], r64["losses"]))
    worst = {k: float(f"{v:.3g}") for k, v in worst.items()}
    return params, worst


def bits_sum(tensors):
    """The sum of the float32 bit patterns (as unsigned integers): equal iff (almost
    surely) the values are bit-identical; the Rust test checks its weights and images."""
    return int(sum(int(t.numpy().view(np.uint32).astype(np.uint64).sum()) for t in tensors))


def decision_inputs(dtype, batch, size, image_stream):
    """Each ReLU's input (the conv outputs) and each max pool's input, in ``dtype``."""
    model = GoogLeNet(dropout=0.0)
    model.load_state_dict(formula_weights(model), strict=True)
    model = model.to(dtype)
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            def hook(module, inputs, output, name=name):
                x = output if isinstance(module, nn.Conv2d) else inputs[0]
                seen[name] = (module, x.detach().to(torch.float64))
            module.register_forward_hook(hook)
    images, _ = formula_batch(batch, size, image_stream)
    with torch.no_grad():
        model(images.to(dtype))
    return seen


def pool_gap(x, pool):
    """The smallest gap between a window's maximum and its next smaller value (windows
    with a positive maximum; equal values are copies of one source after a max pool)."""
    k, s, p = pool.kernel_size, pool.stride, pool.padding
    windows = F.pad(x, (p, p, p, p), value=float("-inf")).unfold(2, k, s).unfold(3, k, s)
    windows = windows.flatten(-2)
    top = windows.max(-1, keepdim=True).values
    below = torch.where(windows < top, windows, torch.full_like(windows, float("-inf")))
    gap = top.squeeze(-1) - below.max(-1).values
    return gap[top.squeeze(-1) > 0].min().item()


def decision_margins(batch, size, image_stream):
    """How safely every ReLU and max-pool decision of the first forward pass is made.

    Another float32 implementation sums in another order, so its pre-activations differ
    from PyTorch's by float32 noise; one that lands on the other side of zero (or a max
    pool that picks another position) moves a gradient by a whole position's share, far
    beyond the test's tolerances. For each layer: margin = the smallest |pre-activation|
    (or max-pool gap) and noise = PyTorch float32's largest error there against float64,
    both over the layer's RMS. Returns the smallest margin / noise and where it is.
    """
    f32 = decision_inputs(torch.float32, batch, size, image_stream)
    f64 = decision_inputs(torch.float64, batch, size, image_stream)
    worst = (math.inf, "")
    for name, (module, exact) in f64.items():
        rms = exact.pow(2).mean().sqrt().item()
        noise = max((f32[name][1] - exact).abs().max().item(), 1e-12)
        if isinstance(module, nn.Conv2d):
            margin, what = exact.abs().min().item(), "ReLU input"
        else:
            margin, what = pool_gap(exact, module), "max pool gap"
        worst = min(worst, (margin / noise, f"{name} ({what} {margin / rms:.2e} of RMS, "
                                            f"float32 noise {noise / rms:.2e})"))
    return worst


def find_image_stream(batch, size, first, count):
    """The image stream in first..first+count with the largest decision margin."""
    best = None
    for stream in range(first, first + count):
        factor, where = decision_margins(batch, size, stream)
        print(f"image stream {stream}: margin {factor:.2f} x noise at {where}", flush=True)
        if best is None or factor > best[0]:
            best = (factor, stream)
    print(f"best: image stream {best[1]} (margin {best[0]:.2f} x noise)")
    return 0


def stage_stats(batch, size, image_stream):
    """Each stage's output RMS and share of positive values, float32 (a liveness check)."""
    model = GoogLeNet(dropout=0.0)
    model.load_state_dict(formula_weights(model), strict=True)
    x, _ = formula_batch(batch, size, image_stream)
    lines = []
    with torch.no_grad():
        for name, stage in model.stages():
            x = stage(x)
            rms = x.pow(2).mean().sqrt().item()
            lines.append(f"  {name:<14} rms {rms:9.4f}  positive {(x > 0).float().mean():.3f}")
    return "\n".join(lines)


def to_json(fixture):
    """One key per line, and one parameter per line: compact, and diffs stay readable."""
    lines = []
    for key, value in fixture.items():
        if key == "params":
            rows = ",\n".join("  " + json.dumps(p) for p in value)
            lines.append(f' "params": [\n{rows}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    json.loads(text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
        "pytorch_googlenet.json"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--image-stream", type=int, default=IMAGE_STREAM)
    parser.add_argument("--find-image-stream", type=int, metavar="COUNT",
                        help="instead: try COUNT image streams from --image-stream and "
                             "print each one's decision margin")
    args = parser.parse_args()
    size, batch, stream = args.image_size, args.batch, args.image_stream
    if args.find_image_stream:
        return find_image_stream(batch, size, stream, args.find_image_stream)

    print("stage outputs (float32, formula weights):")
    print(stage_stats(batch, size, stream))
    margin, where = decision_margins(batch, size, stream)
    print(f"decision margin: {margin:.2f} x float32 noise, at {where}")
    r32 = run(torch.float32, batch, size, args.steps, args.lr, stream)
    r64 = run(torch.float64, batch, size, args.steps, args.lr, stream)
    params, worst = record(r32, r64, args.steps, args.lr)
    fixture = {
        "about": "PyTorch's GoogLeNet (scripts/pytorch_model.py) on formula weights and "
                 "inputs: one forward/backward, then Adam steps. Read by "
                 "tests/pytorch_parity.rs.",
        "command": "python scripts/make_pytorch_fixture.py" +
                   "".join(" " + shlex.quote(a) for a in sys.argv[1:]),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "formula": FORMULA,
        "batch": batch,
        "image_size": size,
        "image_stream": stream,
        "lr": args.lr,
        "adam_steps": args.steps,
        "dropout": "0.0, model.train() (identity; see the script's docstring)",
        "decision_margin": f"{margin:.2f} x float32 noise, at {where}: the smallest "
                           "|ReLU input| or max-pool gap of the first forward pass over "
                           "PyTorch float32's largest error in that layer",
        "weight_bits_sum": bits_sum(formula_weights(GoogLeNet()).values()),
        "image_bits_sum": bits_sum([formula_batch(batch, size, stream)[0]]),
        "labels": r32["labels"].tolist(),
        "logits": [[short(v) for v in row] for row in r32["logits"].tolist()],
        "logits_f64": [[short(v, 10) for v in row] for row in r64["logits"].tolist()],
        "losses": [short(v) for v in r32["losses"]],
        "losses_f64": [short(v, 10) for v in r64["losses"]],
        "pytorch_f32_error": {
            "about": "PyTorch float32 against the same run in float64: logits max abs "
                     "error / max |logit|; loss, norms: max relative error; samples: max "
                     "abs error / (grad RMS) or / lr.",
            **worst,
        },
        "params": params,
    }
    text = to_json(fixture)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"losses (float32): {r32['losses']}")
    print(f"PyTorch float32 vs float64: {worst}")
    print(f"wrote {os.path.normpath(args.out)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
