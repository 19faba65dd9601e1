"""Standalone worker scripts for `jaxrl bench peers`, each run by path with its library's
interpreter; they never import jaxrl (the rejax one runs in its own virtual environment).
`reference_ppo.py` and `reference_dqn.py` are the in-repo single-file references, written from
scratch in PureJaxRL's style as an independent comparison baseline (run by `reference_worker.py`)."""
