"""The CUDA paths: bf16 and fp16 autocast, channels_last, fused optimisers, torch.compile.

They run only where torch sees a GPU; elsewhere they skip, and the CPU tests cover the shared code.
"""

from __future__ import annotations

import io

import pytest
import torch
from test_runner_support import DATA_ROOT, FakeNetwork

from archdsl.runner import train
from archdsl.runner.options import TrainOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
OPTIONS = TrainOptions(epochs=2, batch_size=128, lr=0.05, momentum=0.9, data_dir=str(DATA_ROOT), limit=5000,
                       device="cuda")


@pytest.mark.parametrize("amp", ["auto", "fp16", "off"])
def test_mixed_precision_and_channels_last_train(tmp_path, amp):
    result = train.start(FakeNetwork(width=16), OPTIONS.replace(amp=amp, out=str(tmp_path / "run")),
                         stream=io.StringIO())
    assert result.device.startswith("cuda")
    assert result.final.test_acc > 0.7
    assert result.history[1].train_loss < result.history[0].train_loss


def test_compile_and_adamw_train_and_resume(tmp_path):
    options = OPTIONS.replace(compile=True, optimizer="adamw", lr=0.002, out=str(tmp_path / "run"))
    first = train.start(FakeNetwork(width=16), options.replace(epochs=1), stream=io.StringIO())
    resumed = train.resume(FakeNetwork(width=16), first.run_dir, epochs=2, stream=io.StringIO())
    assert [row.epoch for row in resumed.history] == [1, 2]
    assert resumed.final.test_acc > 0.7
    # The checkpoint of a CUDA run evaluates on the CPU too.
    assert train.evaluate(FakeNetwork(width=16), first.run_dir, device="cpu").test_acc == pytest.approx(
        resumed.final.test_acc, abs=0.01)
