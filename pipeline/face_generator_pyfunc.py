"""The file MLflow runs to rebuild a logged generator (MLflow "models from code"): see pipeline.mlflow_model."""
import mlflow

from pipeline.mlflow_model import FaceGenerator

mlflow.models.set_model(FaceGenerator())
