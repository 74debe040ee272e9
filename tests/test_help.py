"""Every command's --help helps: each argument says what it is, and no default shows as empty."""
import argparse
import importlib

import pytest

COMMANDS = ["facedet.train", "facedet.infer", "facedet.evaluate", "facedet.calibrate", "facedet.export",
            "facedet.tools.benchmark", "facedet.tools.bench_speed", "facedet.tools.figures.all", "facedet.data.synthetic"]


class Parsed(Exception):
    pass


@pytest.mark.parametrize("module", COMMANDS)
def test_every_argument_has_help_and_no_empty_default(module, monkeypatch, capsys):
    parsers = []

    def capture(self, args=None, namespace=None):
        parsers.append(self)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(Parsed):
        importlib.import_module(module).main(["--help"])
    parser = parsers[0]
    silent = [a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not silent, f"{module}: arguments without help text: {silent}"
    monkeypatch.undo()
    text = parser.format_help()
    for empty in ("(default: )", "(default: None)", "(default: [])"):
        assert empty not in text, f"{module} --help shows {empty}"
