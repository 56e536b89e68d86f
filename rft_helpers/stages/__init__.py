"""The stages, one module each, in run order: `sample`, `filter`, `train`, `evaluate`. Each module's steps are what
its notebook calls (notebooks/01_sample.ipynb ... 05_evaluate.ipynb), and its `run_stage` calls them all;
`parameters` writes the notebooks' parameters cells from config.py."""
