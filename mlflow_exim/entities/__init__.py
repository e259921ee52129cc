"""One module per kind of MLflow object; each holds its bundle document, export and import."""
