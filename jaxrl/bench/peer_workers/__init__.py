"""Standalone worker scripts for `jaxrl bench peers`, each run by path with its library's
interpreter; they never import jaxrl (the rejax one runs in its own virtual environment)."""
