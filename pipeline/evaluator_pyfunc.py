"""The file MLflow runs to rebuild a logged evaluator (MLflow "models from code"; pipeline.mlflow_model
logs it): input (N, S, S, 3) uint8 faces, output (N, C) p(y|x), the classifier behind IS and FCD."""
import mlflow
import numpy as np


class ClassEvaluator(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from lrlivae.evaluate.classifier import load_evaluator

        self.model, _ = load_evaluator(context.artifacts["evaluator"], "cpu")

    def predict(self, context, model_input: np.ndarray, params=None):  # the logged signature validates it
        from lrlivae.evaluate.classifier import predict_probs

        return predict_probs(self.model, np.asarray(model_input, dtype=np.uint8))


mlflow.models.set_model(ClassEvaluator())
