"""Many runs: a sweep spec (``spec``) expanded into teacher and student runs (``plan``), where
each stands (``status``, from the results and the job ``journal``), run by a backend
(``backends``: slurm, local, debug) or in this process (``runner``); ``select`` picks a tuning
sweep's winners."""
