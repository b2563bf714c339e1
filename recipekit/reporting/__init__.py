"""Reports: tables, plots, run manifests and model cards."""
