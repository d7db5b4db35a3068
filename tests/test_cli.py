from typer.testing import CliRunner

from theris_cli import __version__
from theris_cli.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_info_names_the_weights_that_actually_load():
    from theris_cli.weights import REGISTRY, default_model

    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.startswith("default weights"))
    name = default_model()
    assert name in line
    assert ("untrained" in line) == (not REGISTRY[name].trained)
