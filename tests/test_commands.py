"""The commands share their flags and names: one definition, the same defaults everywhere."""

from __future__ import annotations

import importlib

import pytest

from clipcls.commands import COMMANDS
from clipcls.commands.common import BATCH_SIZE, SCORERS
from clipcls.inference.scoring import SCORERS as LIBRARY_SCORERS

IMAGE_COMMANDS = (
    "clipcls.commands.evaluate",
    "clipcls.commands.zeroshot",
    "clipcls.commands.predict",
    "clipcls.commands.audit",
)


def test_scorer_names_have_one_definition():
    assert SCORERS == LIBRARY_SCORERS == ("head", "text", "ensemble")


@pytest.mark.parametrize("module", IMAGE_COMMANDS)
def test_loader_flags_have_the_same_defaults_in_every_command(module):
    parser = importlib.import_module(module).build_parser()
    defaults = {a.dest: a.default for a in parser._actions}
    assert defaults["batch_size"] == BATCH_SIZE and defaults["workers"] is None and defaults["device"] == "auto"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_returns_a_status_for_help_and_bad_usage(name, capsys):
    main = importlib.import_module(COMMANDS[name][0]).main
    assert main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out
    assert main(["--no-such-flag"]) == 2
    assert "error:" in capsys.readouterr().err
