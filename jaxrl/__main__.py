from jaxrl.cli import run

run()
