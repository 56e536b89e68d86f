"""rft_helpers: reinforcement fine-tuning of language models, one notebook per stage.

Layers, lowest first. A module imports only from its own layer or a lower one, and the imports never form a cycle;
tests/test_layers.py reads this list and checks every import in the package, those inside functions included.

1. exceptions, io, paths, progress: errors, atomic files, where the package's notebooks and recipes live,
   progress bars
2. config, recipes: every setting, typed and described once, with the stage configs; reading a recipe
3. records, tasks, steps, data, models, gguf_models, rewards, sampling, prm: record formats, tasks, steps,
   models, rewards, sampling engines, process reward models
4. search, filters, train, launch, evaluate, run, tracking: search strategies; the work on rows and checkpoints;
   the run folder and run.json; experiment trackers
5. stages, preflight: one module per stage, the steps its notebook calls; the checks before a run starts
6. pipeline: papermill runs the stage notebooks, iteration by iteration, and resumes
7. cli, report, export, serve: the `rft` command; the tables and plots the notebooks show; static pages of a run;
   vLLM's server for a checkpoint
"""
