"""Training and timing the native-resolution recipes on a lent GPU machine, where SimpleITK cannot be installed.

The GPU machine has torch but no SimpleITK, and what a call may carry is too small for its wheel beside
the data. So the cases travel as the arrays that `ldseg train` itself would read:

    python benchmarks/device_run.py prepare DATA_DIR OUT_DIR      # here: canonical arrays, one .npz a case
    python benchmarks/device_run.py train CASES_DIR CONFIG...     # there: `ldseg train` on those arrays
    python benchmarks/device_run.py time CASES_DIR CASE MODEL     # there: posterior sampling on the GPU

`train` runs the real Trainer of each config with only `load_cases` replaced, in parallel processes on
the one GPU. Every run first trains `--probe-steps` steps, then sets its step count from the measured
step time so that all runs end within `--seconds`, and resumes from the probe's checkpoint (the same
steps an uninterrupted run would take). The configs to commit are then the same files with that
`steps` value: `ldseg train CONFIG` reproduces the run (up to GPU non-determinism).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
import types
from pathlib import Path

import numpy as np


def prepare(data_dir: str, out_dir: str) -> None:
    from ldseg.card import CARD_FILE, ModelCard
    from ldseg.data import find_cases
    from ldseg.store import resolve_model
    from ldseg.training import read_canonical_case

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = ModelCard.load(resolve_model() / CARD_FILE).num_classes  # the bundled model's structures
    for case in find_cases(data_dir):
        image, labels = read_canonical_case(case, classes)
        np.savez_compressed(out / f"{case.name}.npz", image=image, labels=labels)
        print(f"{case.name}: {image.shape} {image.dtype}")


def _without_simpleitk() -> None:
    """No SimpleITK on the GPU machine: the engine imports it at module level, but with the cases given as
    arrays no SimpleITK function runs, so an empty module stands in for the import alone."""
    sys.modules.setdefault("SimpleITK", types.ModuleType("SimpleITK"))


def _train_one(config_path: str, cases_dir: str, seconds: float, probe_steps: int, threads: int) -> None:
    _without_simpleitk()
    import torch

    from ldseg.baseline import BaselineTrainConfig, BaselineTrainer, config_model_type
    from ldseg.training import LOG_FILE, TrainConfig, Trainer, training_case

    torch.set_num_threads(threads)
    baseline = config_model_type(config_path) == "baseline"
    base_class, config_class = (BaselineTrainer, BaselineTrainConfig) if baseline else (Trainer, TrainConfig)

    class ArrayTrainer(base_class):  # type: ignore[misc, valid-type]
        def load_cases(self, names):
            loaded = []
            for name in names:
                arrays = np.load(Path(cases_dir) / f"{name}.npz")
                loaded.append(training_case(name, arrays["image"], arrays["labels"], self.card, self.device))
            return loaded

    config = config_class.load(config_path)
    started = time.time()
    trainer = ArrayTrainer(dataclasses.replace(config, steps=probe_steps), print)
    trainer.run()
    probe = time.time() - started
    log = [json.loads(line) for line in (trainer.output_dir / LOG_FILE).read_text().splitlines()]
    per_step = log[-1]["seconds"] / probe_steps
    # what is left, less a margin for the second start-up (data, network) and the final validation and export
    remaining = seconds - probe - 30.0
    steps = max(probe_steps, int(probe_steps + remaining / per_step) // 100 * 100)
    print(json.dumps({"config": config_path, "probe_seconds": round(probe, 1), "seconds_per_step": round(per_step, 4),
                      "steps": steps}), flush=True)
    ArrayTrainer(dataclasses.replace(config, steps=steps), print).run()
    print(json.dumps({"config": config_path, "done_steps": steps, "seconds": round(time.time() - started, 1)}), flush=True)


def train(cases_dir: str, configs: list[str], seconds: float, probe_steps: int, threads: int) -> int:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_train_one, args=(config, cases_dir, seconds, probe_steps, threads)) for config in configs
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return max(process.exitcode or 0 for process in processes)


def time_sampling(cases_dir: str, case: str, model: str, samples: tuple[int, ...], repeats: int, device: str) -> None:
    _without_simpleitk()
    import torch

    from ldseg.package import load_package
    from ldseg.posterior import draw_samples, initial_noise
    from ldseg.preprocess import image_to_model_grid, normalise_intensity
    from ldseg.sampler import cosine_alphas_cumprod

    device = torch.device(device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    package = load_package(model, device)
    card = package.card
    array = np.load(Path(cases_dir) / f"{case}.npz")["image"]
    image = image_to_model_grid(torch.from_numpy(normalise_intensity(array, card.normalization))[None], card)
    image = image[None].to(device)
    alphas_cumprod = cosine_alphas_cumprod(card.diffusion.train_timesteps)
    autocast = torch.float16 if device.type == "cuda" else None  # as the Segmenter runs it
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    print(f"{name}, model {card.name} {card.version}, model grid {card.model_grid}, "
          f"k = {card.diffusion.default_steps}, {autocast or torch.float32}")
    for n in samples:
        z_T = initial_noise(n, card.latent_grid, seed=0)

        def run() -> None:
            for probabilities in draw_samples(package.network, image, z_T, alphas_cumprod,
                                              card.diffusion.default_steps, n, autocast):
                probabilities.mean(0)
            synchronize()

        run()  # warm-up: kernels, allocations
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        seconds = (time.perf_counter() - started) / repeats
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else ""
        print(f"N = {n:2d}: {seconds:.3f} s per volume (mean of {repeats}){peak}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("data_dir")
    prep.add_argument("out_dir")
    run = commands.add_parser("train")
    run.add_argument("cases_dir")
    run.add_argument("configs", nargs="+")
    run.add_argument("--seconds", type=float, default=420.0, help="wall time for all runs together")
    run.add_argument("--probe-steps", type=int, default=50)
    run.add_argument("--threads", type=int, default=4, help="CPU threads per run (augmentation, data)")
    timing = commands.add_parser("time")
    timing.add_argument("cases_dir")
    timing.add_argument("case")
    timing.add_argument("model")
    timing.add_argument("--samples", type=int, nargs="+", default=[1, 8, 16])
    timing.add_argument("--repeats", type=int, default=5)
    timing.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.command == "time":
        time_sampling(args.cases_dir, args.case, args.model, tuple(args.samples), args.repeats, args.device)
        return 0
    if args.command == "prepare":
        prepare(args.data_dir, args.out_dir)
        return 0
    return train(args.cases_dir, args.configs, args.seconds, args.probe_steps, args.threads)


if __name__ == "__main__":
    sys.exit(main())
