"""Inference speed and memory on the full 160 x 104 x 240 knee volume (prints a Markdown table).

    python benchmarks/benchmark_inference.py [--model knee-bones] [--image PATH] [--device cpu]

For N = 1, 4, 8, 16 posterior samples with k = 2 DDIM steps: end-to-end seconds (preprocessing,
sampling, resampling to the input grid, fusion, uncertainty; model loading excluded) and peak
resident memory of a fresh process; the same N drawn as N separate single-sample calls (both averaged
over --repeats runs); and the share of time in image encoder, denoiser, decoder, resampling and
fusion/uncertainty.
Each configuration runs in its own process so that peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "knee-oai" / "images" / "knee1.nii.gz"


def measure(args: argparse.Namespace) -> dict:
    """One configuration in this process: warm-up, then timed runs."""
    import torch

    from ldseg.imageio import read_image
    from ldseg.inference import Segmenter, select_device
    from ldseg.settings import SegmentSettings
    from ldseg.package import load_package
    from ldseg.store import resolve_model

    device = select_device(args.device)
    package = load_package(resolve_model(args.model), device)
    segmenter = Segmenter(package, device)
    image = read_image(args.image)
    network_seconds: dict[str, float] = defaultdict(float)

    def timed(name: str, module: torch.nn.Module) -> None:
        original = module.forward

        def forward(*inputs, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            output = original(*inputs, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            network_seconds[name] += time.perf_counter() - start
            return output

        module.forward = forward

    timed("image encoder", package.network.image_encoder)
    timed("denoiser", package.network.denoiser)
    timed("decoder", package.network.label_decoder)

    segmenter.segment(image, SegmentSettings(samples=1))  # warm-up (allocations, kernels)
    network_seconds.clear()
    repeats = args.repeats
    start = time.perf_counter()
    for _ in range(repeats):
        result = segmenter.segment(image, SegmentSettings(samples=args.samples))
    batched = (time.perf_counter() - start) / repeats
    shares = {name: seconds / repeats for name, seconds in network_seconds.items()}
    shares["resampling to input grid"] = result.timings["resampling"] + result.timings["preprocessing"]
    shares["fusion + uncertainty"] = result.timings["fusion"] + result.timings["uncertainty"]

    separate = None
    if args.separate:
        start = time.perf_counter()
        for _ in range(repeats):
            for seed in range(args.samples):
                segmenter.segment(image, SegmentSettings(samples=1, seed=seed))
        separate = (time.perf_counter() - start) / repeats

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        peak_mib_gpu = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib_gpu = None
    return {"samples": args.samples, "device": str(device), "seconds": batched, "separate_seconds": separate,
            "peak_rss_mib": peak_mib, "peak_gpu_mib": peak_mib_gpu, "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="knee-bones")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples-list", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)  # child process: one configuration
    parser.add_argument("--separate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.samples is not None:
        print(json.dumps(measure(args)))
        return

    rows = []
    for samples in args.samples_list:
        command = [sys.executable, __file__, "--model", args.model, "--image", str(args.image), "--device", args.device,
                   "--repeats", str(args.repeats), "--samples", str(samples), "--separate"]
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))

    print(f"Image {args.image.name}, model {args.model}, device {rows[0]['device']}, torch threads "
          f"{__import__('torch').get_num_threads()}, k = 2 DDIM steps\n")
    print("| N | end-to-end s | peak RSS MiB | N separate calls s | batching speed-up |" +
          (" peak GPU MiB |" if rows[0]["peak_gpu_mib"] is not None else ""))
    print("|---|---|---|---|---|" + ("---|" if rows[0]["peak_gpu_mib"] is not None else ""))
    for row in rows:
        speedup = row["separate_seconds"] / row["seconds"]
        gpu = f" {row['peak_gpu_mib']:.0f} |" if row["peak_gpu_mib"] is not None else ""
        print(f"| {row['samples']} | {row['seconds']:.2f} | {row['peak_rss_mib']:.0f} | {row['separate_seconds']:.2f} | "
              f"{speedup:.2f}x |{gpu}")
    print("\nShare of end-to-end time:")
    print("| N | " + " | ".join(rows[0]["shares"]) + " |")
    print("|---|" + "---|" * len(rows[0]["shares"]))
    for row in rows:
        print(f"| {row['samples']} | " + " | ".join(f"{100 * s / row['seconds']:.0f}%" for s in row["shares"].values()) + " |")


if __name__ == "__main__":
    main()
