"""The stage layer: one module per DVC stage, the Typer app, the params schema and MLflow tracking."""
