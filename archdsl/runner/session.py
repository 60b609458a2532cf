"""What training, evaluation and prediction share: the network built on its device, the data read and held
to the network's declared input, the checkpoint a command loads, and autocast.

    model = build_model(net, options, context)
    data = load_data(net, options)                    # --data, --limit; checked against the network's input
    device_data(data, options, context, net, normalization)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from archdsl import ir
from archdsl.errors import UsageError
from archdsl.runner import checkpoint, datasets, runfolder, selection
from archdsl.runner.batches import DeviceData
from archdsl.runner.datasets import ImageData, Normalization
from archdsl.runner.distributed import Context
from archdsl.runner.options import WEIGHTS, TrainOptions
from archdsl.runner.runfolder import DataInfo, RunInfo


class Network(Protocol):
    """What the runner needs of ``archdsl.CompiledNetwork``. A compiled network's ``program`` (optional here)
    lets the run folder keep the files its spec imports (runfolder.spec_files)."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    param_values: dict[str, ir.Value]
    source_path: str | None
    source_text: str
    fingerprint: str

    def build(self, init: str = "default", seed: int | None = None) -> torch.nn.Module: ...

    def require_concrete(self, task: str) -> None: ...


def absolute(options: TrainOptions) -> TrainOptions:
    """--data-dir and a --data path made absolute, as run.json records them (a resume or an eval from another
    folder reads the same data), and --augment's default for the data set written out."""
    data = options.data if options.data in datasets.KNOWN_SETS else os.path.abspath(options.data)
    data_dir = os.path.abspath(options.data_dir) if options.data_dir is not None else None
    augment = options.augment if options.augment is not None else datasets.default_augment(data)
    return options.replace(data=data, data_dir=data_dir, augment=augment)


def check_recorded_data(info: RunInfo, given: dict[str, Any]) -> None:
    """The data folder or file that run.json names, unless the command names another, must still exist:
    otherwise the error says that it came from run.json, since the user did not type it."""
    recorded = info.options
    where = str(info.folder / runfolder.RUN_JSON)
    if given.get("data_dir") is None and recorded.data_dir is not None and not Path(recorded.data_dir).is_dir():
        raise UsageError(f"the run's data folder {os.path.abspath(recorded.data_dir)} (its --data-dir, recorded in "
                         f"{runfolder.RUN_JSON}) is not there", file=where,
                         hint="pass --data-dir with the folder that holds the run's data now")
    if given.get("data") is None and recorded.data not in datasets.KNOWN_SETS and not Path(recorded.data).exists():
        can_move = "data" in given  # eval reads other data; a resume trains on the run's own
        raise UsageError(f"the run's data {os.path.abspath(recorded.data)} (its --data, recorded in "
                         f"{runfolder.RUN_JSON}) is not there", file=where,
                         hint="pass --data with where it is now" if can_move else
                         "put it back there: a resume trains on the data the run began with")


def chosen_checkpoint(info: RunInfo, model: torch.nn.Module, net: Network, weights: str) -> checkpoint.Checkpoint:
    """The run's last checkpoint, or (``weights="best"``) its best epoch's by the run's --monitor, found from
    the metrics in the last checkpoint's state (selection.py)."""
    if weights not in WEIGHTS:
        raise UsageError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    latest = checkpoint.latest(info.folder)
    if latest is None:
        raise UsageError(f"{info.folder} has no checkpoint yet: no epoch of the run has finished",
                         file=str(info.folder))
    if weights == "last":
        return latest
    state = checkpoint.load_state(latest, model, spec=checkpoint.spec_hash(net), trained_from=info.trained_from())
    metric = info.options.monitored
    best = selection.best_epoch(state.history, metric)
    found = checkpoint.at(info.folder, best)
    if found is None:
        raise UsageError(f"the run's best epoch by {metric} is {best}, and its checkpoint was not kept",
                         file=str(info.folder),
                         hint=f"the run keeps {info.options.keep} (--keep); its last checkpoint is epoch {latest.epoch}")
    return found


def load_data(net: Network, options: TrainOptions) -> ImageData:
    check_classifier(net)
    data = datasets.load(options.data, options.data_dir, channels=net.input_shape[0]).limited(options.limit)
    check_contract(net, data, options.resize)
    return data


def split(data: ImageData, options: TrainOptions) -> ImageData:
    """The training split less the validation examples that --val holds out (the same for every resume)."""
    if options.val is None:
        return data
    return data.with_validation(options.val, derived_seed(options.seed, 0, "validation") % (1 << 32))


def data_sha256(data: ImageData) -> str:
    """The SHA-256 of the images and labels as a run trains on them (both splits, after --limit), with
    their types and shapes: the same for the .gz files and for their unpacked copies."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def check_same_data(info: RunInfo, data: ImageData) -> None:
    """A resume trains on the data the run began with: --data-dir may point at another copy now."""
    recorded = info.data
    found = DataInfo(len(data.train_labels), len(data.test_labels), data.image_shape, data.classes,
                     data_sha256(data) if recorded.sha256 is not None else None)  # runs before the checksum had none
    if found == recorded:
        return
    differences = [f"{field.name} {_brief(getattr(recorded, field.name))} in {runfolder.RUN_JSON}, "
                   f"{_brief(getattr(found, field.name))} now"
                   for field in fields(DataInfo)
                   if field.name != "sha256" and getattr(recorded, field.name) != getattr(found, field.name)]
    differences = differences or [f"the images or labels differ from those whose SHA-256 {runfolder.RUN_JSON} records"]
    raise UsageError(f"{data.name} from {data.source} is not the data this run was trained on: "
                     + "; ".join(differences),
                     file=str(info.folder / runfolder.RUN_JSON),
                     hint="pass the --data-dir that holds the run's data, or start a new run on this data")


def _brief(value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return f"{len(value)} names"
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def device_data(data: ImageData, options: TrainOptions, context: Context, net: Network,
                normalization: Normalization) -> DeviceData:
    return DeviceData(data, context.device, size=(net.input_shape[1], net.input_shape[2]),
                      normalization=normalization, channels_last=channels_last(options))


def check_classifier(net: Network) -> None:
    if len(net.input_shape) != 3:
        raise UsageError(
            f"network '{net.name}' takes input {shape_text(net.input_shape)}; training needs images, C x H x W",
            file=net.source_path)
    if len(net.output_shape) != 1:
        raise UsageError(
            f"network '{net.name}' outputs {shape_text(net.output_shape)}; training needs one score per class",
            file=net.source_path, hint="end the network with a linear layer to the number of classes")


def check_contract(net: Network, data: ImageData, resize: int | None) -> None:
    """The network's declared input is the contract: the data (resized or not) must match it."""
    channels, height, width = net.input_shape
    data_channels, data_height, data_width = data.image_shape
    expects = f"network '{net.name}' expects {channels}x{height}x{width} images"
    if data_channels != channels:
        raise UsageError(
            f"the {expects}, but {data.name} has {data_channels}-channel images ({shape_text(data.image_shape)})",
            file=net.source_path,
            hint=f"declare the network's input with {data_channels} channel(s), or use data with {channels}",
        )
    if resize is not None and (resize, resize) != (height, width):
        raise UsageError(
            f"--resize {resize} makes {data_channels}x{resize}x{resize} images, but the {expects}",
            file=net.source_path,
            hint=f"pass --resize {height}" if height == width else "declare a square input to use --resize",
        )
    if resize is None and (data_height, data_width) != (height, width):
        raise UsageError(
            f"the {expects}, but {data.name}'s images are {shape_text(data.image_shape)}",
            file=net.source_path,
            hint=(f"pass --resize {height} to resize them on the device" if height == width
                  else f"declare the input as [{data_channels}, {data_height}, {data_width}]"),
        )
    # Too few scores cannot learn every class; too many leave scores that no label trains but argmax still picks.
    classes, wanted = net.output_shape[0], len(data.classes)
    if wanted != classes:
        raise UsageError(
            f"{data.name} has {wanted} classes, but network '{net.name}' outputs {classes} scores",
            file=net.source_path,
            hint=(f"pass --param classes={wanted}" if "classes" in net.param_values
                  else f"make the last layer output {wanted} scores"),
        )


def build_model(net: Network, options: TrainOptions, context: Context) -> torch.nn.Module:
    model = net.build(init=options.init, seed=options.seed)
    memory_format = torch.channels_last if channels_last(options) else torch.preserve_format
    return model.to(context.device, memory_format=memory_format)


def local_processes(context: Context) -> int:
    """torchrun's processes on this machine, which share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if context.distributed else 1


def channels_last(options: TrainOptions) -> bool:
    # On by default everywhere: on this project's 2-core CPU a training step in NHWC was 1.06x (ResNet-18)
    # to 1.34x (LeNet) as fast as in the default layout (benchmarks/bench_train.py --layouts).
    return options.channels_last is not False


def autocast_dtype(options: TrainOptions, context: Context) -> torch.dtype | None:
    """bf16 by default on CUDA; fp32 by default on the CPU, where bf16 autocast is opt-in.

    On a CPU with AMX or AVX512-BF16 (oneDNN uses them), ``--amp bf16`` made a VGG-11/8 training step
    1.3x as fast on this project's machine; on CPUs without them it is slower than fp32, hence opt-in.
    """
    if options.amp == "fp16" and not context.is_cuda:
        raise UsageError("--amp fp16 needs a CUDA device; on the CPU autocast takes bf16",
                         hint="pass --amp bf16, or drop --amp to train in fp32")
    if options.amp == "off" or (options.amp == "auto" and not context.is_cuda):
        return None
    return torch.float16 if options.amp == "fp16" else torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def derived_seed(seed: int, epoch: int, stream: str, rank: int = 0) -> int:
    """A 63-bit seed for one random stream of one epoch, independent of the others."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{stream}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(dim) for dim in shape)
