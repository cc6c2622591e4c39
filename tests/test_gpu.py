"""On a CUDA device (run with `-m gpu`): joint training in fp32 and bf16 gives finite losses, and the
bf16 model's reconstructions stay close to the fp32 model's after the same steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train.loop import Trainer, TrainSettings
from tests.test_train_steps import tiny_cfg, tiny_data

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def _train(tmp_path, precision: str):
    torch.manual_seed(0)
    faces, labels = tiny_data(64)
    cfg = tiny_cfg()
    model, disc = build_model(cfg).cuda(), build_discriminator(cfg).cuda()
    s = TrainSettings(mode="joint", steps=20, batch_size=16, n_gm=1, checkpoint_every=100, log_every=5,
                      precision=precision)
    t = Trainer(model, disc, faces, np.arange(len(faces)), labels, s, tmp_path / f"{precision}.pt", "fp",
                device="cuda")
    t.run()
    return model


def test_joint_training_on_cuda_in_fp32_and_bf16(tmp_path):
    x = torch.rand(8, 3, 32, 32, device="cuda") * 2 - 1
    recs = []
    for precision in ("fp32", "bf16"):
        model = _train(tmp_path, precision).eval()
        with torch.no_grad():
            rec = model.reconstruct(x, sample=False).x_rec.float()
        assert torch.isfinite(rec).all()
        recs.append(rec)
    assert float((recs[0] - recs[1]).abs().mean()) < 0.2
