"""Issue 13, item 4: `--config run.yaml` is read as safely as the description file: a duplicate
key, a Python tag or a YAML 1.1 surprise is an error naming the file, the key and the line."""

from __future__ import annotations

import pytest

from cfg import CFG
from clipcls.commands.train import main


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: 0.01\nepochs: 2\nlr: 0.1\n", "key 'lr' appears twice (again on line 3)"),
        (
            "run_name: !!python/object/apply:os.system [touch pwned]\n",
            "key 'run_name' (line 1): tag 'tag:yaml.org,2002:python/object/apply:os.system' is not plain data",
        ),
        ("epochs: 3\nfreeze_text: no\n", "key 'freeze_text' (line 2): no would be read as the bool False"),
        ("run_name: 010\n", "key 'run_name' (line 1): 010 would be read as the int 8"),
        ("max_minutes: 1:30\n", "key 'max_minutes' (line 1): 1:30 would be read as the int 90"),
        ("optim_betas: [0.9, off]\n", "key 'optim_betas' (line 1): off would be read as the bool False"),
    ],
)
def test_a_config_file_that_would_not_mean_what_it_says_is_refused(tmp_path, capsys, text, message):
    conf = tmp_path / "run.yaml"
    conf.write_text(text, encoding="utf-8")
    assert main(["--config", str(conf), "--print_config"], CFG) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {conf}: {message}")
    assert not (tmp_path / "pwned").exists()


def test_plain_config_values_and_quoted_text_are_accepted(tmp_path, capsys):
    import yaml

    conf = tmp_path / "run.yaml"
    conf.write_text("run_name: '010'\nfreeze_text: false\nmax_minutes: 90\noptim_betas: [0.9, 0.95]\n")
    assert main([f"--config={conf}", "--print_config"], CFG) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["run_name"] == "010" and printed["freeze_text"] is False and printed["optim_betas"] == [0.9, 0.95]
