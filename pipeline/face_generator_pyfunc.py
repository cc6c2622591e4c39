"""The file MLflow runs to rebuild a logged generator (MLflow "models from code"): see pipeline.face_generator."""
import mlflow

from pipeline.face_generator import FaceGenerator

mlflow.models.set_model(FaceGenerator())
