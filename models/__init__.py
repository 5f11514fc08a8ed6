"""genbench's built-in model plugins, one file per family (installed as genbench_models)."""
