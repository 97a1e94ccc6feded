"""PyTorch as a peer of our engine: the same training step, timed; and one step, compared.

Three jobs, on ``--device cuda`` (or ``cpu``):

**Timing** (the default): the training step ``train`` takes (forward in training mode
with dropout 0.4, mean cross-entropy, backward, Adam with lr 0.001 and PyTorch's
defaults, and ``loss.item()``, which our step also reads back), on a fixed random batch
already on the device, for each batch size (16 and 128) at 224x224. Eager, and with
``torch.compile`` (``--modes``). Each configuration gets warm-up steps, then timed
steps; the median step time gives images/s. On CUDA it times float32 as we compute it
(TF32 off), and PyTorch's default precision (cuDNN convolutions in TF32). Each row is
printed (flushed) and the ``--json`` file rewritten as it finishes, so a run killed at
a time limit keeps what it measured; a configuration that fails (``torch.compile`` can)
is a row saying so, and the exit status is 1::

    python scripts/pytorch_peer.py --device cuda --json peer.json
    python scripts/pytorch_peer.py --device cpu --image-size 32 --batch-sizes 4,8  # smoke test

``cargo bench --bench train_step`` runs it on the CPU (``--threads N``), taking turns
with our CPU step, and prints the ratio.

**Writing a batch** for the check: ``--write-batch FILE`` writes ``images`` [N, 1, S, S]
f32 and ``labels`` [N] int64 (random, seeded) as safetensors.

**Checking** a checkpoint of ours: ``--check CHECKPOINT_DIR --batch FILE --ours FILE``
loads our ``model.safetensors`` strictly, runs the batch once in ``eval()`` mode (dropout
off: the step is deterministic) with gradients, and compares the logits, the loss and
every parameter's gradient with ours (``--ours``: ``logits``, ``loss``, ``grad.<name>``,
from ``cargo run --release --example dump_step``). Exits 1 on a mismatch. The whole
round trip::

    cargo run --release --bin train -- --preset quick --image-size 32 --train-limit 64 \\
        --test-limit 16 --run-dir /tmp/run
    python scripts/pytorch_peer.py --write-batch /tmp/batch.safetensors --image-size 32
    cargo run --release --example dump_step -- --checkpoint /tmp/run/checkpoints/epoch-1 \\
        --batch /tmp/batch.safetensors --out /tmp/ours.safetensors
    python scripts/pytorch_peer.py --check /tmp/run/checkpoints/epoch-1 \\
        --batch /tmp/batch.safetensors --ours /tmp/ours.safetensors

The check also reruns the step in float64 (on the CPU unless ``--f64-device``): each
quantity passes when ours is about as close to float64 as PyTorch float32 is, or within
a floor (``RATIO`` and ``FLOORS`` below say why these). ``--no-f64`` skips that run and
compares with PyTorch float32 under coarser fixed tolerances. On CUDA the check runs in
full float32 (TF32 off), as our kernels compute.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_model import GoogLeNet, load_checkpoint  # noqa: E402

# --check tolerances. With the float64 reference (the default) each quantity passes when
# error(ours, f64) <= max(FLOOR, RATIO * error(PyTorch f32, f64)): ours must be about as
# close to float64 as PyTorch float32 is, or within the floor.
#
# Float32 noise depends on the checkpoint, the batch and the image size. At 32x32 every
# quantity is about 1e-6 off float64 in both implementations. At 224x224 (a trained
# `quick` checkpoint, batch 16) conv1.0.weight's gradient, a sum of 16*112*112 products
# per entry that largely cancels, is 1e-3 off in both; the RATIO term covers that. And a
# pre-activation within rounding of zero can fall on the other side of a ReLU in one
# implementation (or a max pool pick another of two near-equal inputs): that moves one
# position's share of a gradient. That run had two such flips (inception_5b.branch1 and
# inception_4c.branch3_2, pre-activations 4e-7 and -4.5e-7 in float64): 1.5e-4 and
# 5.3e-4 of those gradients' norms, and about 1e-4 in every earlier layer's. PyTorch's
# own error does not show a flip it did not make, so the gradient floors cover them:
# ten times the larger. A real bug (a wrong tap, border or channel) moves far more.
RATIO = 4.0
FLOORS = {"logits": 1e-5, "loss": 1e-5, "grad": 5e-3, "grad entry": 5e-3}
# Without the reference (--no-f64): error(ours, PyTorch f32) <= these, coarser because
# of the cancelling sums above (conv1.0.weight at 224x224: 1.35e-3 from PyTorch).
NO_REFERENCE_TOLS = {"logits": 1e-4, "loss": 1e-4, "grad": 1e-2, "grad entry": 1e-2}
UNITS = {
    "logits": "max |difference| / max |logit|",
    "loss": "relative",
    "grad": "||difference|| / ||gradient|| per tensor",
    "grad entry": "max |difference| / ||gradient|| per tensor",
}


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_precision(device, precision):
    """``fp32``: full float32 everywhere; ``default``: PyTorch's defaults (on CUDA,
    cuDNN convolutions may use TF32; matmuls stay float32)."""
    if device.type != "cuda":
        return
    if precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    else:
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = False


def time_config(device, batch, size, mode, precision, warmup, steps, seed):
    """Median seconds per training step, and the compile/warm-up time, for one setting."""
    set_precision(device, precision)
    torch.manual_seed(seed)
    model = GoogLeNet().to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    forward = torch.compile(model) if mode == "compile" else model
    images = torch.rand(batch, 1, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = forward(images)
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        # Our step reads back the loss and the correct count too.
        (logits.detach().argmax(1) == labels).sum().item()
        return loss.item()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - start)
        if not math.isfinite(loss):
            raise RuntimeError(f"the loss became {loss}")
    return statistics.median(times), warm


def timing(args):
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    precisions = args.precision.split(",") if device.type == "cuda" else ["fp32"]
    modes = args.modes.split(",")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    # Each line is flushed, and the JSON rewritten after each row, so that a run killed
    # at its time limit (the GPU check caps each stage) keeps every row it finished.
    print(f"PyTorch {torch.__version__} on {device_name(device)}: GoogLeNet training step "
          f"(forward, cross-entropy, backward, Adam lr 0.001), {args.image_size}x"
          f"{args.image_size}, median of {args.steps} steps after {args.warmup} warm-up",
          flush=True)
    print(f"{'mode':<8} {'precision':<9} {'batch':>5} {'ms/step':>10} {'images/s':>10} "
          f"{'warm-up s':>10}", flush=True)
    rows = []

    def save():
        if args.json:
            report = dict(torch=torch.__version__, device=device_name(device),
                          cudnn_benchmark=(device.type == "cuda"
                                           and not args.no_cudnn_benchmark),
                          warmup=args.warmup, steps=args.steps, rows=rows)
            # Beside it, then renamed over it: a kill mid-write leaves the last whole file.
            with open(args.json + ".partial", "w") as f:
                json.dump(report, f, indent=1)
            os.replace(args.json + ".partial", args.json)

    for mode in modes:
        for precision in precisions:
            for batch in batches:
                row = dict(mode=mode, precision=precision, batch=batch,
                           image_size=args.image_size)
                try:
                    median, warm = time_config(device, batch, args.image_size, mode,
                                               precision, args.warmup, args.steps, args.seed)
                    row.update(ms_per_step=median * 1e3, images_per_s=batch / median,
                               warmup_s=warm)
                except Exception as e:  # torch.compile can fail on some setups
                    text = (str(e).strip().splitlines() or [""])[0][:200]
                    row.update(error=f"{type(e).__name__}: {text}")
                if device.type == "cuda":
                    row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                    torch.cuda.reset_peak_memory_stats(device)
                    torch.cuda.empty_cache()
                rows.append(row)
                print_row(row)
                save()
    if args.json:
        print(f"wrote {args.json}", flush=True)
    return 0 if all("error" not in r for r in rows) else 1


def print_row(row):
    head = f"{row['mode']:<8} {row['precision']:<9} {row['batch']:>5}"
    if "error" in row:
        print(f"{head}  failed: {row['error']}", flush=True)
    else:
        print(f"{head} {row['ms_per_step']:>10.1f} {row['images_per_s']:>10.1f} "
              f"{row['warmup_s']:>10.1f}", flush=True)


def write_batch(args):
    """A seeded batch: images uniform in [0, 1) (as `train`'s un-normalised inputs) or
    normalised like the `quick` preset's (``--normalize``), labels uniform in 0..10."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.count, 1, args.image_size, args.image_size, generator=g)
    if args.normalize:
        images = (images - 0.2860) / 0.3530
    labels = torch.randint(0, 10, (args.count,), generator=g, dtype=torch.int64)
    save_file({"images": images.contiguous(), "labels": labels}, args.write_batch)
    print(f"wrote {args.write_batch}: images {list(images.shape)}, labels {labels.tolist()}")
    return 0


def one_step(checkpoint, images, labels, dtype, device):
    """Logits, loss and every parameter gradient of one eval-mode step."""
    model = load_checkpoint(GoogLeNet(), checkpoint).to(device=device, dtype=dtype).eval()
    logits = model(images.to(device=device, dtype=dtype))
    loss = nn.functional.cross_entropy(logits, labels.to(device))
    loss.backward()
    grads = {n: p.grad.detach().cpu().double() for n, p in model.named_parameters()}
    return logits.detach().cpu().double(), loss.detach().cpu().double(), grads


def errors(a, b):
    """Discrepancies of ``a`` from ``b`` (float64 tensors), per quantity, in UNITS."""
    out = {"logits": ((a[0] - b[0]).abs().max() / b[0].abs().max()).item(),
           "loss": (abs(a[1] - b[1]) / abs(b[1])).item()}
    for name, g in b[2].items():
        d = a[2][name] - g
        scale = g.norm().item() or 1.0
        out[("grad", name)] = d.norm().item() / scale
        out[("grad entry", name)] = d.abs().max().item() / scale
    return out


def read_ours(path, names):
    """Our logits, loss and gradients; exits on a file that does not fit the model."""
    from safetensors.torch import load_file

    ours = load_file(path)
    expected = ["logits", "loss"] + [f"grad.{n}" for n in names]
    problems = [f"missing {k}" for k in expected if k not in ours]
    problems += [f"unexpected {k}" for k in sorted(set(ours) - set(expected))]
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        sys.exit(f"{path} does not match the model: " + "; ".join(problems[:6]) + more)
    return (ours["logits"].double(), ours["loss"].double().reshape(()),
            {n: ours[f"grad.{n}"].double() for n in names})


def check(args):
    from safetensors.torch import load_file

    if args.batch is None or args.ours is None:
        sys.exit("--check needs --batch FILE and --ours FILE")
    device = torch.device(args.device)
    set_precision(device, "fp32")
    batch = load_file(args.batch)
    images, labels = batch["images"].float(), batch["labels"].long()
    theirs = one_step(args.check, images, labels, torch.float32, device)
    names = list(theirs[2])
    ours = read_ours(args.ours, names)
    for n in names:
        if ours[2][n].shape != theirs[2][n].shape:
            sys.exit(f"grad.{n} has shape {list(ours[2][n].shape)}, "
                     f"expected {list(theirs[2][n].shape)}")
    e_torch = errors(ours, theirs)
    reference = not args.no_f64
    if reference:
        ref = one_step(args.check, images, labels, torch.float64, torch.device(args.f64_device))
        e_ref, e_torch_ref = errors(ours, ref), errors(theirs, ref)

    print(f"checkpoint {args.check}, batch {list(images.shape)}, PyTorch {torch.__version__} "
          f"on {device_name(device)}, float32 (TF32 off), eval mode (no dropout)")
    print(f"loss: ours {ours[1].item():.7f}, PyTorch {theirs[1].item():.7f}"
          + (f", float64 {ref[1].item():.7f}" if reference else ""))
    if reference:
        print(f"pass: error(ours, f64) <= max(floor, {RATIO:g} x error(PyTorch, f64))")
        print(f"{'quantity':<46} {'ours-torch':>10} {'ours-f64':>10} {'torch-f64':>10} "
              f"{'limit':>9}")
    else:
        print("pass: error(ours, PyTorch) <= the fixed tolerance (no float64 reference)")
        print(f"{'quantity':<46} {'ours-torch':>10} {'limit':>9}")

    def verdict(key):
        kind = key if isinstance(key, str) else key[0]
        if reference:
            limit = max(FLOORS[kind], RATIO * e_torch_ref[key])
            return e_ref[key] <= limit, limit
        limit = NO_REFERENCE_TOLS[kind]
        return e_torch[key] <= limit, limit

    def show(label, key, ok, limit):
        cols = f"{e_torch[key]:>10.2e}"
        if reference:
            cols += f" {e_ref[key]:>10.2e} {e_torch_ref[key]:>10.2e}"
        print(f"{label:<46} {cols} {limit:>9.1e}  {'ok' if ok else 'MISMATCH'}")

    failures = []
    for key in ["logits", "loss"] + [(k, n) for n in names for k in ("grad", "grad entry")]:
        ok, limit = verdict(key)
        if not ok:
            failures.append(key)
        if isinstance(key, str) or args.verbose or not ok:
            label = key if isinstance(key, str) else f"{key[0]} {key[1]}"
            show(label, key, ok, limit)
    for kind in ("grad", "grad entry"):
        # The gradient whose error is closest to its limit, when all passed quietly.
        keys = [(kind, n) for n in names]
        worst = max(keys, key=lambda k: (e_ref if reference else e_torch)[k] / verdict(k)[1])
        if not args.verbose and worst not in failures:
            show(f"{kind} (closest to its limit: {worst[1]})"[:46], worst, *verdict(worst))
    for kind, what in UNITS.items():
        print(f"  {kind}: {what}")
    if failures:
        print(f"MISMATCH: {len(failures)} of {2 + 2 * len(names)} quantities")
        return 1
    print(f"all {2 + 2 * len(names)} quantities within their limits")
    return 0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda, cuda:N or cpu (default: cuda when there is one)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads (torch.set_num_threads; default: PyTorch's own)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the timing's weights and batch, and --write-batch's")
    timing_group = parser.add_argument_group("timing")
    timing_group.add_argument("--image-size", type=int, default=224,
                              help="also --write-batch's image size (default 224)")
    timing_group.add_argument("--batch-sizes", default="16,128", help="comma-separated")
    timing_group.add_argument("--modes", default="eager,compile",
                              help="comma-separated: eager, compile")
    timing_group.add_argument("--precision", default="fp32,default",
                              help="CUDA only, comma-separated: fp32 (TF32 off), default "
                                   "(PyTorch's: TF32 cuDNN convolutions)")
    timing_group.add_argument("--warmup", type=int, default=10,
                              help="untimed steps first (compilation happens here)")
    timing_group.add_argument("--steps", type=int, default=30,
                              help="timed steps; their median is reported")
    timing_group.add_argument("--no-cudnn-benchmark", action="store_true",
                              help="leave cudnn.benchmark off (PyTorch's default)")
    timing_group.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    batch_group = parser.add_argument_group("writing a batch")
    batch_group.add_argument("--write-batch", metavar="FILE")
    batch_group.add_argument("--count", type=int, default=8, help="images in the batch")
    batch_group.add_argument("--normalize", action="store_true",
                             help="normalise as the quick/recommended presets do")
    check_group = parser.add_argument_group("checking")
    check_group.add_argument("--check", metavar="CHECKPOINT_DIR")
    check_group.add_argument("--batch", metavar="FILE",
                             help="safetensors: images [N,1,S,S] f32, labels [N] int64/int32")
    check_group.add_argument("--ours", metavar="FILE",
                             help="safetensors from examples/dump_step: logits, loss, "
                                  "grad.<name>")
    check_group.add_argument("--no-f64", action="store_true",
                             help="skip the float64 reference run")
    check_group.add_argument("--f64-device", default="cpu",
                             help="where the float64 reference runs (default cpu)")
    check_group.add_argument("--verbose", action="store_true",
                             help="print every gradient's line, not only mismatches")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            sys.exit(f"--threads {args.threads}: expected at least 1")
        torch.set_num_threads(args.threads)
    if args.write_batch:
        return write_batch(args)
    if args.check:
        return check(args)
    return timing(args)


if __name__ == "__main__":
    sys.exit(main())
