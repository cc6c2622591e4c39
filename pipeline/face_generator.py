"""The generator MLflow rebuilds from a logged model (pipeline.mlflow_model logs it): a pyfunc model
whose input is one request per row, `identity` (class index), optional `n` (default 1) and `seed`
(default 0), and whose output is the generated uint8 RGB faces (sum of n, S, S, 3), request after request.
Only MLflow imports this module (through pipeline/face_generator_pyfunc.py); no stage does."""
from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd


def build_generator(slim: dict):
    """The generator (eval mode) from a slim checkpoint dict."""
    if slim["family"] == "baseline":
        from lrlivae.baselines import BaselineConfig, build_baseline

        model = build_baseline(BaselineConfig.from_dict(slim["config"]))
    else:
        from lrlivae.nn.config import ModelConfig
        from lrlivae.nn.model import build_model

        model = build_model(ModelConfig.from_dict(slim["config"]))
    model.load_state_dict(slim["model"])
    model.eval()
    return model


def generate_faces(model, requests, n_classes: int) -> np.ndarray:
    """requests: a DataFrame (or mapping of columns) with identity, optional n and seed -> (N, S, S, 3) uint8."""
    import pandas as pd
    import torch

    from lrlivae.data.aligned import to_uint8_images

    df = requests if isinstance(requests, pd.DataFrame) else pd.DataFrame(requests)
    if "identity" not in df:
        raise ValueError("the input needs an `identity` column (class index)")
    out = []
    for i, row in enumerate(df.itertuples(index=False)):
        ident = int(getattr(row, "identity"))
        n = getattr(row, "n", 1)
        seed = getattr(row, "seed", 0)
        n = 1 if n is None or pd.isna(n) else int(n)
        seed = 0 if seed is None or pd.isna(seed) else int(seed)
        if not 0 <= ident < n_classes:
            raise ValueError(f"input row {i}: identity {ident} is not a class index in [0, {n_classes})")
        if not 1 <= n <= 10_000:
            raise ValueError(f"input row {i}: n = {n} must lie in [1, 10000]")
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            out.append(to_uint8_images(model.generate(y=ident, n=n, generator=g).x))
    size = int(getattr(model.cfg, "image_size", 0) or model.cfg.net.image_size)
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


class FaceGenerator(mlflow.pyfunc.PythonModel):
    """pyfunc: identity (and n, seed) per row -> generated faces (see the module docstring)."""

    def load_context(self, context):
        import torch

        slim = torch.load(context.artifacts["generator"], map_location="cpu", weights_only=True)
        self.n_classes = len(slim["identities"])
        self.model = build_generator(slim)

    def predict(self, context, model_input: pd.DataFrame, params=None):  # the logged signature validates it
        return generate_faces(self.model, model_input, self.n_classes)
