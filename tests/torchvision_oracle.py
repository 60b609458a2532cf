"""torchvision as a test oracle for the zoo: its import on a CPU-only torch, and its models with weights that
test more than the defaults do.

torchvision 0.28.0's wheel is linked against CUDA: on the CPU build of torch its C extension does not load, and
``import torchvision`` then fails while it registers fake kernels for the operators ``torchvision::nms`` and
``torchvision::qnms``, which nothing defined. Defining the two schemas first makes ``torchvision.models`` work
(the detection operators stay unusable, which the classifiers never call). archdsl never imports torchvision;
only the tests do, through ``import_torchvision``.

``model`` is also a factory that ``archdsl compare --reference torchvision_oracle:model`` (and
``compare.against_reference``) can load: torchvision's builder with batch-norm statistics and affine factors
drawn at random, so that a weight copy that swapped a running mean with a variance, or two normalisations,
cannot go unnoticed as it would with torchvision's initial ones and zeros.
"""

from __future__ import annotations

import importlib.util

_LIBRARY = None  # kept alive: the schemas are removed when the Library object is collected

INSTALL_HINT = "pip install torchvision==0.28.0 --no-deps (a test-only oracle; archdsl does not depend on it)"


def available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def import_torchvision():
    """``torchvision``, imported once per process (with the two schemas defined where its extension cannot
    load)."""
    global _LIBRARY
    import torch

    if _LIBRARY is None and torch.version.cuda is None and not _defined("nms"):
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision


def _defined(op: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, op)
    except (AttributeError, RuntimeError):
        return False
    return True


# What the zoo's networks leave out of torchvision's builders: GoogLeNet's and Inception-v3's auxiliary
# classifiers, which the builders add without weights (with weights, they are dropped after loading) and which
# only run in training. init_weights=False skips their truncated-normal initialisation (seconds on a CPU); the
# weights are random either way.
BUILDER_ARGS = {"googlenet": {"aux_logits": False, "init_weights": False},
                "inception_v3": {"aux_logits": False, "init_weights": False}}


def on_meta(name: str):
    """torchvision's ``name`` (with ``BUILDER_ARGS``) on the meta device: no memory, no initialisation.

    RegNet's builders compute their widths with tensors, which cannot be read on the meta device; that
    computation runs on the CPU."""
    import contextlib

    import torch

    models = import_torchvision().models
    params = models.regnet.BlockParams
    computed = params.from_init_params.__func__

    def widths_on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return computed(cls, *args, **kwargs)

    with contextlib.ExitStack() as stack:
        stack.callback(setattr, params, "from_init_params", params.from_init_params)
        params.from_init_params = classmethod(widths_on_cpu)
        with torch.device("meta"):
            return models.get_model(name, **BUILDER_ARGS.get(name, {})).eval()


def model(name: str, seed: int = 0):
    """torchvision's ``name`` (with ``BUILDER_ARGS``) at random weights (its own initialisation, seeded) and
    random batch-norm statistics and factors, in eval mode."""
    import torch

    models = import_torchvision().models
    torch.manual_seed(seed)
    built = models.get_model(name, **BUILDER_ARGS.get(name, {}))
    with torch.no_grad():
        for key, tensor in built.named_parameters():
            if key.endswith("layer_scale"):  # ConvNeXt's start at 1e-6, which would hide its blocks
                tensor.uniform_(0.1, 1.0)
        for module in built.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                if module.affine:
                    module.weight.normal_(1, 0.1)
                    module.bias.normal_(0, 0.1)
    return built.eval()


def tensors_by_use(reference) -> list[tuple[str, object]]:
    """The state of torchvision's model in post-order: a module's own tensors after those of its children.

    That is the order in which a spec holds them where a module's own tensor acts on its children's output:
    ConvNeXt's blocks hold ``layer_scale`` themselves and multiply their layers' result by it, which the zoo's
    spec writes as a ``scale`` layer after those layers. Elsewhere in torchvision's classifiers a module holds
    either tensors or children, and this is the state_dict's order."""

    def walk(module, prefix: str):
        for name, child in module.named_children():
            yield from walk(child, f"{prefix}{name}.")
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, tensor in own:
            if name not in module._non_persistent_buffers_set:
                yield f"{prefix}{name}", tensor

    return list(walk(reference, ""))

